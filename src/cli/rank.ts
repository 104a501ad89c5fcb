// `tl rank DATA`: transferability scores of candidate backbones on a dataset, best first.
import { labelsOf } from '../options/shared.js';
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { addOptions, parseOptions, printJson, resizeIfGiven } from './common.js';
import { INPUT_SIZE } from '../options/shared.js';
import { addInferenceOptions, inferenceSchema, startInference } from './run-model.js';
import { progress, type Io } from './io.js';
import { dataOptions, dataSchema, refuseMultiLabel } from './options.js';
import { UsageError } from '../errors.js';

const rankSchema = inferenceSchema.extend(dataSchema.shape).extend({
  models: z.string().min(1).optional(),
  inputSize: INPUT_SIZE.schema,
  probe: z.boolean().default(false),
});

export function rankCommand(io: Io): Command {
  const cmd = new Command('rank')
    .description('score how well each pretrained model suits a dataset (LogME, TransRate, LEEP) from one pass over its training images')
    .argument('<DATA>', 'dataset folder (one subfolder per class)')
    .option('--models <a,b,...>', 'registry models or model paths to score (default: every registry model whose weights are offline)')
    .option('--probe', 'also train a linear head on each model\'s features and report its validation accuracy');
  addOptions(cmd, { inputSize: { ...INPUT_SIZE, help: "input size for every model (default: each model's own; LEEP needs the model's own)" } });
  dataOptions(cmd);
  addInferenceOptions(cmd);
  cmd.action(async (data: string, raw: unknown) => {
    const opts = parseOptions(rankSchema, raw);
    refuseMultiLabel(opts, 'tl rank');
    const { listModels } = await import('../registry/describe.js');
    const { storeRoot } = await import('../store/index.js');
    const registry = opts.models ? [] : listModels(storeRoot(io.env));
    const models = opts.models ? opts.models.split(',').map((m) => m.trim()).filter((m) => m.length > 0) : registry.filter((m) => m.offline !== 'no').map((m) => m.name);
    // By default only models whose weights are here are ranked: the others are named, not silently left out.
    const notHere = registry.filter((m) => m.offline === 'no').map((m) => m.name);
    if (models.length === 0) throw new UsageError('No model to rank: no registry model has its weights offline.', { suggestion: 'Pass --models NAME,... (weights download on first use) or place weights with `tl models import FILE`.' });
    if (notHere.length > 0 && !opts.quiet && !opts.json) io.err(`not ranked (weights not downloaded; name them with --models to fetch them): ${notHere.join(', ')}\n`);
    const { tf, run } = await startInference(io, opts);
    const { rank } = await import('../rank/index.js');
    const spinner = progress(io, `ranking ${models.length} model${models.length === 1 ? '' : 's'}`, opts);
    const result = await rank(tf, {
      ...run, data, models, val: opts.val, test: opts.test, seed: opts.seed, ...resizeIfGiven(raw, opts.resize), maxPixels: opts.maxPixels, labels: labelsOf(opts),
      ...(opts.inputSize ? { inputSize: opts.inputSize } : {}), probe: opts.probe, store: storeRoot(io.env),
      onProgress: (model, done, total) => spinner.update(`${model}: ${done}/${total} images`),
    });
    spinner.succeed(`ranked ${result.rows.length} model${result.rows.length === 1 ? '' : 's'} on ${result.images} training images`);
    if (opts.json) return printJson(io, { ...result, notRanked: notHere });
    const table = new Table({ head: ['rank', 'model', 'LogME', 'TransRate', 'LEEP', ...(opts.probe ? ['probe val acc'] : []), 'features', 'input', 'seconds'], style: { head: [], border: [] } });
    result.rows.forEach((r, i) => table.push([i + 1, r.model, r.logme.toFixed(4), r.transrate.toFixed(2), r.leep === null ? '-' : r.leep.toFixed(4), ...(opts.probe ? [r.probe ? r.probe.valAccuracy.toFixed(3) : '-'] : []), r.featureSize, r.inputSize, r.seconds.toFixed(1)]));
    io.out(`${table.toString()}\n`);
    io.out(`${result.images} training images of ${result.classes.length} classes in ${data}. Higher is better for every score; they rank models on the same data, not across datasets. Sorted by LogME (You et al., 2021); TransRate (Huang et al., 2022) is the coding-rate gain of the labels; LEEP (Nguyen et al., 2020) needs the model's own classifier.\n`);
    for (const s of result.skipped) io.out(`skipped ${s.path}: ${s.reason}\n`);
  });
  return cmd;
}
