// `tl cache DATA --model M --freeze K --out DIR`: the frozen part's outputs for every image, for `tl finetune --cache`.
import { labelsOf, multiLabelOf } from '../options/shared.js';
import { Command } from 'commander';
import { z } from 'zod';
import { addOptions, parseOptions, printJson } from './common.js';
import { schemaOf } from '../util/options.js';
import { addInferenceOptions, inferenceSchema, shardFor, startInference } from './run-model.js';
import { progress, type Io } from './io.js';
import { dataOptions, dataSchema } from './options.js';
import { ANY_MODEL, MODEL_INPUT_OPTIONS, SHARD_OPTIONS } from '../options/shared.js';

const cacheSchema = inferenceSchema.extend(dataSchema.shape).extend({
  model: ANY_MODEL.schema,
  freeze: z.union([z.number().int().min(1).transform(String), z.string().min(1)]),
  out: z.string().min(1),
  ...schemaOf(MODEL_INPUT_OPTIONS).shape,
  ...schemaOf(SHARD_OPTIONS).shape,
});

export function cacheCommand(io: Io): Command {
  const cmd = new Command('cache')
    .description("compute the frozen part's outputs at --freeze for every image (what tl finetune caches) into a folder that `tl finetune --cache` trains from; shardable across a job array")
    .argument('<DATA>', 'dataset folder (one subfolder per class)')
    .requiredOption('--freeze <n|layer>', 'the freeze point of the fine-tune that will use the cache (layers 0..n-1, or up to a layer)')
    .requiredOption('-o, --out <dir>', 'the cache folder (with --shard: the folder of the shards)');
  addOptions(cmd, { model: ANY_MODEL, ...MODEL_INPUT_OPTIONS, ...SHARD_OPTIONS });
  dataOptions(cmd);
  addInferenceOptions(cmd);
  cmd.action(async (data: string, raw: unknown) => {
    const opts = parseOptions(cacheSchema, raw);
    const shard = await shardFor(io, opts);
    const { tf, info, run } = await startInference(io, opts);
    if (run.workers > 1 && run.engine !== 'onnx' && !opts.quiet && !opts.json) io.err('notice: tl cache runs the frozen part in this thread on tfjs; --engine onnx uses every core\n');
    const { buildCache } = await import('../frozen/build.js');
    const { storeRoot } = await import('../store/index.js');
    const spinner = progress(io, 'loading the model', opts);
    const result = await buildCache(tf, info, {
      data, model: opts.model, freeze: opts.freeze, out: opts.out, batchSize: run.batchSize, engine: run.engine, weights: opts.weights, seed: opts.seed, resize: opts.resize, maxPixels: opts.maxPixels, labels: labelsOf(opts), multiLabel: multiLabelOf(opts),
      ...(opts.inputSize ? { inputSize: opts.inputSize } : {}), ...(opts.preprocess ? { preprocess: opts.preprocess } : {}), store: storeRoot(io.env), ...(shard ? { shard } : {}),
      onProgress: (done, total) => spinner.update(`caching ${done}/${total}`),
    }).catch((err: unknown) => {
      spinner.fail();
      throw err;
    });
    spinner.succeed(`cached ${result.images} images`);
    if (opts.json) return printJson(io, result);
    io.out(`${result.images} images x ${(result.bytesPerImage / 1024).toFixed(1)} KiB at ${result.boundaryLayers.join(', ')} in ${result.seconds.toFixed(1)} s: wrote ${result.folder}${result.shard ? ` (shard ${result.shard.index} of ${result.shard.count}; \`tl merge ${opts.out} --out DIR\` joins the shards)` : ''}\n`);
  });
  return cmd;
}
