// `tl predict --model RUN|NAME IMAGE|DIR...`: class probabilities per image.
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { addOptions, parseOptions, printJson } from './common.js';
import { addInferenceOptions, inferenceSchema, shardFor, startInference } from './run-model.js';
import { downloadReporter, progress, type Io } from './io.js';
import { PREDICT_OPTIONS } from '../options/commands.js';
import { DATA_OPTIONS, SHARD_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';

const predictSchema = inferenceSchema.extend({
  model: z.string().min(1),
  ...schemaOf(PREDICT_OPTIONS).shape,
  ...schemaOf(SHARD_OPTIONS).shape,
  maxPixels: DATA_OPTIONS.maxPixels.schema,
});

export function predictCommand(io: Io): Command {
  const cmd = new Command('predict')
    .description('class probabilities for images, from a fine-tuned run or a registry classifier')
    .argument('<IMAGES...>', 'image files and folders (searched recursively)')
    .requiredOption('-m, --model <run|name>', 'run folder written by tl finetune, a .onnx file tl exported, or a registry model with its top (e.g. mobilenet_v2.nsfwjs)');
  addOptions(cmd, { ...PREDICT_OPTIONS, ...SHARD_OPTIONS, maxPixels: DATA_OPTIONS.maxPixels });
  addInferenceOptions(cmd);
  cmd.action(async (inputs: string[], raw: unknown) => {
    const opts = parseOptions(predictSchema, raw);
    const shard = await shardFor(io, opts);
    const { tf, run } = await startInference(io, opts);
    const { predict } = await import('../inference/predict.js');
    const spinner = progress(io, 'loading the model', opts);
    const result = await predict(tf, {
      ...run, model: opts.model, inputs, top: opts.top, tta: opts.tta, ttaZoom: opts.ttaZoom, maxPixels: opts.maxPixels, ...(opts.out ? { out: opts.out } : {}), ...(shard ? { shard } : {}),
      onProgress: (done, total) => spinner.update(`predicting ${done}/${total}`),
      onDownload: downloadReporter(io, spinner, opts),
    });
    spinner.succeed(`predicted ${result.predictions.length} images`);
    if (opts.json) return printJson(io, result);
    const k = Math.min(opts.top, result.classes.length);
    const pctOf = (t: { class: string; probability: number }) => `${t.class} ${(t.probability * 100).toFixed(1)}%`;
    // Several labels per image: the labels at or above their thresholds first, then the most probable ones.
    const labelled = result.thresholds !== null;
    const table = new Table({ head: ['image', ...(labelled ? ['labels (at or above threshold)'] : []), ...Array.from({ length: k }, (_, i) => `#${i + 1}`)], style: { head: [], border: [] } });
    for (const p of result.predictions) table.push([p.path, ...(labelled ? [p.labels!.length ? p.labels!.map(pctOf).join(', ') : '(none)'] : []), ...p.top.map(pctOf)]);
    io.out(`${table.toString()}\n`);
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
    if (result.file) io.out(`wrote ${result.file}\n`);
  });
  return cmd;
}
