// `tl eval --model RUN [DATA]`: metrics on the run's held-out split (or a labelled folder) and reports.
import { join } from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { addOptions, parseOptions, printJson } from './common.js';
import { EVAL_OPTIONS } from '../options/commands.js';
import { SHARD_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addInferenceOptions, inferenceSchema, shardFor, startInference } from './run-model.js';
import { progress, type Io } from './io.js';
import { printMetrics, printMultiLabel } from './print-metrics.js';

const evalSchema = inferenceSchema.extend({
  model: z.string().min(1),
  ...schemaOf(EVAL_OPTIONS).shape,
  ...schemaOf(SHARD_OPTIONS).shape,
});

export function evalCommand(io: Io): Command {
  const cmd = new Command('eval')
    .description("metrics of a fine-tuned run on its held-out test split (or another labelled folder), or of an exported .onnx file on a labelled folder; writes report.json, .md, .html")
    .argument('[DATA]', "a labelled folder (default: the run's own dataset and split)")
    .requiredOption('-m, --model <run>', 'run folder written by tl finetune, or a .onnx file tl exported (then DATA is required)');
  addOptions(cmd, { ...EVAL_OPTIONS, ...SHARD_OPTIONS });
  addInferenceOptions(cmd);
  cmd.action(async (data: string | undefined, raw: unknown) => {
    const opts = parseOptions(evalSchema, raw);
    const { shardFolderName } = await import('../shard/index.js');
    const shard = await shardFor(io, opts);
    const { tf, info, run: runOptions } = await startInference(io, opts);
    const { evaluate, writeEvalReports } = await import('../eval/index.js');
    const spinner = progress(io, 'loading the model', opts);
    const result = await evaluate(tf, {
      ...runOptions, run: opts.model, ...(data ? { data } : {}), split: opts.split, tta: opts.tta, ttaZoom: opts.ttaZoom,
      onProgress: (done, total) => spinner.update(`evaluating ${done}/${total}`),
      ...(shard ? { shard, shardOut: opts.out! } : {}),
    });
    if (shard) {
      spinner.succeed(`evaluated ${result.count} images of shard ${shard.index} of ${shard.count}`);
      if (opts.json) return printJson(io, { shard, images: result.count });
      io.out(`wrote ${join(opts.out!, shardFolderName(shard.index, shard.count))}: \`tl merge ${opts.out} --out metrics.json\` computes the metrics of every shard\n`);
      return;
    }
    const files = await writeEvalReports(result, info.label, opts.out);
    spinner.succeed(`evaluated ${result.count} images`);
    if (opts.json) return printJson(io, { ...result, files });
    io.out(`${result.usedRunSplit ? `the run's ${result.split} split` : 'every image'} of ${result.data}: ${result.count} images\n`);
    if (result.metrics) printMetrics(io, result.metrics);
    if (result.multiLabel) printMultiLabel(io, result.multiLabel);
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
    io.out(`wrote ${files.join(', ')}\n`);
  });
  return cmd;
}
