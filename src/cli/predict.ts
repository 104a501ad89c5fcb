// `tl predict --model RUN|NAME IMAGE|DIR...`: class probabilities per image.
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { addCommonOptions, addEngineOption, announceBackend, backendSchema, commonSchema, engineSchema, parseOptions, printJson } from './common.js';
import { downloadReporter, progress, type Io } from './io.js';

const predictSchema = commonSchema.extend({
  backend: backendSchema.optional(),
  engine: engineSchema,
  model: z.string().min(1),
  top: z.coerce.number().int().min(1).max(1000),
  batchSize: z.coerce.number().int().min(1).max(4096),
  workers: z.union([z.literal('auto'), z.coerce.number().int().min(1).max(64)]),
});

export function predictCommand(io: Io): Command {
  const cmd = new Command('predict')
    .description('class probabilities for images, from a fine-tuned run or a registry classifier')
    .argument('<IMAGES...>', 'image files and folders (searched recursively)')
    .requiredOption('-m, --model <run|name>', 'run folder written by tl finetune, or a registry model with its top (e.g. mobilenet_v2.nsfwjs)')
    .option('-k, --top <k>', 'classes to show per image', '3')
    .option('--batch-size <n>', 'images per forward pass', '32')
    .option('--workers <n|auto>', 'threads running the model; auto: one per core on wasm and cpu', 'auto');
  addEngineOption(cmd, 'the forward passes');
  addCommonOptions(cmd, { backend: true });
  cmd.action(async (inputs: string[], raw: unknown) => {
    const opts = parseOptions(predictSchema, raw);
    const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
    const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    const { resolveEngine } = await import('../engine/index.js');
    const engine = await resolveEngine(opts.engine);
    announceBackend(io, backend.info, opts, engine);
    const { predict } = await import('../inference/predict.js');
    const spinner = progress(io, 'loading the model', opts);
    const result = await predict(backend.tf, {
      model: opts.model, inputs, top: opts.top, batchSize: opts.batchSize, backend: backend.info.name, engine: engine.name,
      workers: opts.workers === 'auto' ? (backend.info.name === 'tensorflow' ? 1 : availableParallelism()) : opts.workers,
      onProgress: (done, total) => spinner.update(`predicting ${done}/${total}`),
      onDownload: downloadReporter(io, spinner, opts),
    });
    spinner.succeed(`predicted ${result.predictions.length} images`);
    if (opts.json) return printJson(io, result);
    const k = Math.min(opts.top, result.classes.length);
    const table = new Table({ head: ['image', ...Array.from({ length: k }, (_, i) => `#${i + 1}`)], style: { head: [], border: [] } });
    for (const p of result.predictions) table.push([p.path, ...p.top.map((t) => `${t.class} ${(t.probability * 100).toFixed(1)}%`)]);
    io.out(`${table.toString()}\n`);
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
  });
  return cmd;
}
