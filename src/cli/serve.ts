// `tl serve MODEL`: a run's model.onnx or an exported .onnx file behind HTTP (POST /predict, GET /health, GET /model).
import { Command } from 'commander';
import { addCommonOptions, addOptions, parseOptions, commonSchema } from './common.js';
import { SERVE_OPTIONS } from '../options/commands.js';
import { DATA_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import type { Io } from './io.js';

const serveSchema = commonSchema.extend({ ...schemaOf(SERVE_OPTIONS).shape, maxPixels: DATA_OPTIONS.maxPixels.schema });

export function serveCommand(io: Io): Command {
  const cmd = new Command('serve')
    .description('serve a classifier over HTTP on ONNX Runtime: POST /predict (an image, or a multipart form with one), GET /health, GET /model; SIGTERM or Ctrl-C answers the requests in flight, then stops')
    .argument('<MODEL>', 'run folder written by tl finetune (its model.onnx) or a .onnx file tl exported');
  addOptions(cmd, { ...SERVE_OPTIONS, maxPixels: DATA_OPTIONS.maxPixels });
  addCommonOptions(cmd, { backend: false });
  cmd.action(async (model: string, raw: unknown) => {
    const opts = parseOptions(serveSchema, raw);
    const { startServer } = await import('../serve/index.js');
    const serving = await startServer({ model, host: opts.host, port: opts.port, maxBatch: opts.maxBatch, maxWaitMs: opts.maxWaitMs, maxBodyBytes: Math.round(opts.maxBodyMb * 2 ** 20), maxPixels: opts.maxPixels, top: opts.top, ...(opts.threads ? { threads: opts.threads } : {}) });
    const listening = { url: serving.url, model: serving.model.name, labels: serving.model.classes.length, inputSize: serving.model.inputSize };
    if (opts.json) io.out(`${JSON.stringify(listening)}\n`);
    else io.out(`serving ${listening.model} on ${serving.url} (${listening.labels} labels, ${listening.inputSize}px; POST ${serving.url}/predict)\n`);
    // A second signal while draining ends the process at once (bin/tl.js's own handler).
    const signal = await new Promise<'SIGINT' | 'SIGTERM'>((resolve) => {
      const on = { SIGINT: () => stop('SIGINT'), SIGTERM: () => stop('SIGTERM') };
      const stop = (s: 'SIGINT' | 'SIGTERM') => {
        process.off('SIGINT', on.SIGINT);
        process.off('SIGTERM', on.SIGTERM);
        resolve(s);
      };
      process.on('SIGINT', on.SIGINT);
      process.on('SIGTERM', on.SIGTERM);
    });
    if (!opts.quiet && !opts.json) io.err(`${signal}: answering the requests in flight, then stopping\n`);
    await serving.close();
    const s = serving.stats();
    if (!opts.quiet && !opts.json) io.err(`stopped after ${s.requests} requests (${s.rejected} rejected) in ${s.batches} batches\n`);
  });
  return cmd;
}
