// `tl extract DATA|IMAGES...`: features of a pretrained model's feature layer for every image.
import { labelsOf } from '../options/shared.js';
import { Command } from 'commander';
import { z } from 'zod';
import { addCommonOptions, addOptions, commonSchema, parseOptions, printJson, resizeIfGiven } from './common.js';
import { addInferenceOptions, inferenceSchema, shardFor, startInference } from './run-model.js';
import { downloadReporter, progress, type Io } from './io.js';
import { dataOptions, dataSchema, refuseMultiLabel } from './options.js';
import { EXTRACT_OPTIONS } from '../options/commands.js';
import { MODEL_INPUT_OPTIONS, SHARD_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';

const extractSchema = inferenceSchema.extend(dataSchema.shape).extend({
  ...schemaOf(EXTRACT_OPTIONS).shape,
  ...schemaOf(MODEL_INPUT_OPTIONS).shape,
  ...schemaOf(SHARD_OPTIONS).shape,
});

export function extractCommand(io: Io): Command {
  const cmd = new Command('extract')
    .description('write the features of a model layer for every image: .npy (+ index CSV), CSV or JSON lines, streamed')
    .argument('<INPUTS...>', 'a dataset folder (class and split go into the index) or image files and folders');
  addOptions(cmd, { ...EXTRACT_OPTIONS, ...MODEL_INPUT_OPTIONS, ...SHARD_OPTIONS });
  dataOptions(cmd);
  addInferenceOptions(cmd);
  cmd.action(async (inputs: string[], raw: unknown) => {
    const opts = parseOptions(extractSchema, raw);
    refuseMultiLabel(opts, 'tl extract');
    const shard = await shardFor(io, opts);
    const { tf, run } = await startInference(io, opts);
    const { extract } = await import('../features/index.js');
    const spinner = progress(io, 'loading the model', opts);
    const out = opts.out ?? `features.${opts.format}`;
    const result = await extract(tf, {
      ...run, inputs, model: opts.model, ...(opts.layer ? { layer: opts.layer } : {}), out, format: opts.format,
      val: opts.val, test: opts.test, seed: opts.seed, ...resizeIfGiven(raw, opts.resize), maxPixels: opts.maxPixels, labels: labelsOf(opts),
      ...(opts.inputSize ? { inputSize: opts.inputSize } : {}), ...(opts.preprocess ? { preprocess: opts.preprocess } : {}), weights: opts.weights,
      onProgress: (done, total) => spinner.update(`extracting ${done}/${total}`),
      onDownload: downloadReporter(io, spinner, opts),
      ...(shard ? { shard } : {}),
    });
    spinner.succeed(`extracted ${result.count} images`);
    if (opts.json) return printJson(io, result);
    io.out(`${result.count} images x ${result.shape.slice(1).join('x')} features of '${result.layer}' (${result.model}), ${result.imagesPerSecond.toFixed(1)} img/s\n`);
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
    io.out(`wrote ${result.files.join(', ')}${result.shard ? ` (shard ${result.shard.index} of ${result.shard.count}: ${result.shard.images} of the dataset's images; \`tl merge ${opts.out} --out FILE.${opts.format}\` joins the shards)` : ''}\n`);
  });
  return cmd;
}

export function mergeCommand(io: Io): Command {
  const cmd = new Command('merge')
    .description('join the shards of a sharded `tl extract`, `tl cache`, `tl predict` or `tl eval` into what one machine writes (same bytes and row order; for eval, the metrics of all shards), after checking they belong together')
    .argument('<DIRS...>', 'shard folders (shard-I-of-N), or folders holding them')
    .requiredOption('-o, --out <path>', 'the merged output: for tl extract shards a file (features.npy: its index goes beside it), for tl cache shards a folder, for tl predict shards a .jsonl file, for tl eval shards the metrics .json');
  addCommonOptions(cmd, { backend: false });
  cmd.action(async (dirs: string[], raw: unknown) => {
    const opts = parseOptions(commonSchema.extend({ out: z.string().min(1) }), raw);
    const { mergeShards } = await import('../merge/index.js');
    const result = await mergeShards(dirs, opts.out);
    if (opts.json) return printJson(io, result);
    io.out(`merged ${result.shards} shards, ${result.rows} rows: wrote ${result.files.join(', ')}\n`);
    if (result.eval) {
      const { printMetrics } = await import('./print-metrics.js');
      io.out(`${result.eval.usedRunSplit ? `the run's ${result.eval.split} split` : 'every image'} of ${result.eval.data}: ${result.eval.metrics.count} images\n`);
      printMetrics(io, result.eval.metrics);
    }
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
  });
  return cmd;
}
