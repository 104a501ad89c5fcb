// `tl data DATA`: what a dataset holds before training on it.
import { Command } from 'commander';
import Table from 'cli-table3';
import { DATA_CHECK_OPTIONS } from '../options/commands.js';
import { labelsOf, multiLabelOf } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addOptions, parseOptions, printJson } from './common.js';
import { addInferenceOptions, inferenceSchema, startInference } from './run-model.js';
import { progress } from './io.js';
import { dataOptions, dataSchema, refuseMultiLabel } from './options.js';
import type { Io } from './io.js';
import type { SuspectsResult } from '../audit/suspects.js';
import type { Dataset } from '../data/index.js';
import type { z } from 'zod';

const dataCommandSchema = inferenceSchema.extend(dataSchema.shape).extend(schemaOf(DATA_CHECK_OPTIONS).shape);

export function dataCommand(io: Io): Command {
  const cmd = new Command('data').description('summarise a folder dataset: classes, split counts, skipped files, image sizes').argument('<DATA>', 'dataset folder (DATA/<class>/<image>)');
  dataOptions(cmd);
  addOptions(cmd, DATA_CHECK_OPTIONS);
  // The backbone's batching, threads and engine: used by --suspects only.
  addInferenceOptions(cmd);
  cmd.action(async (root: string, raw: unknown) => {
    const opts = parseOptions(dataCommandSchema, raw);
    const { openDataset, summarizeDataset } = await import('../data/index.js');
    const labels = labelsOf(opts);
    if (opts.suspects) refuseMultiLabel(opts, 'tl data --suspects');
    const multiLabel = multiLabelOf(opts);
    const dataset = await openDataset(root, { val: opts.val, test: opts.test, seed: opts.seed, size: opts.size, resize: opts.resize, maxPixels: opts.maxPixels, allowConflicts: true, labels, ...(multiLabel ? { multiLabel } : {}) });
    const summary = await summarizeDataset(dataset);
    const nearDuplicates = opts.duplicates ? await findNearDuplicates(io, dataset, opts) : null;
    const suspects = opts.suspects ? await runSuspects(io, root, opts) : null;
    if (opts.json) return printJson(io, { ...summary, ...(nearDuplicates ? { nearDuplicates } : {}), ...(suspects ? { suspects } : {}) });
    const table = new Table({ head: [summary.multiLabel ? 'label' : 'class', 'train', 'val', 'test', 'total'], style: { head: [], border: [] } });
    for (const c of summary.classes) table.push([c.name, c.train, c.val, c.test, c.total]);
    table.push([summary.multiLabel ? 'images' : 'all', summary.totals.train, summary.totals.val, summary.totals.test, summary.totals.all]);
    io.out(`${summary.root} (${summary.layout}, split seed ${summary.seed})\n${summary.layoutNotes.map((n) => `${n}\n`).join('')}${table.toString()}\n`);
    const per = summary.labelsPerImage;
    if (per) io.out(`several labels per image: an image counts under each of its labels (${per.min}..${per.max} labels per image, median ${per.median})\n`);
    if (summary.imageSize) {
      const { width: w, height: h } = summary.imageSize;
      io.out(`image size: width ${w.min}..${w.max} (median ${w.median}), height ${h.min}..${h.max} (median ${h.median})\n`);
    }
    io.out(`ignored: ${summary.ignored.hidden} hidden, ${summary.ignored.nonImage} non-image files\n`);
    for (const o of summary.outside) io.out(`link out of the dataset: ${o.link} -> ${o.target} (${o.images} image${o.images === 1 ? '' : 's'} counted under its class)\n`);
    if (summary.conflicts.length) {
      io.out(`${summary.conflicts.length} image(s) under two classes, left out of the counts (tl finetune refuses the dataset until each is in one class):\n`);
      for (const c of summary.conflicts) io.out(`  ${c.files.join(' = ')} (${c.why}; classes ${c.classes.join(', ')})\n`);
    }
    if (summary.duplicates.length) {
      io.out(`${summary.duplicates.length} group(s) of identical files within a class (they may fall into different splits):\n`);
      for (const d of summary.duplicates) io.out(`  ${d.join(' = ')}\n`);
    }
    if (summary.skipped.length) {
      io.out(`skipped ${summary.skipped.length} file(s):\n`);
      for (const s of summary.skipped) io.out(`  ${s.path}: ${s.reason}\n`);
    }
    if (nearDuplicates) printNearDuplicates(io, nearDuplicates);
    if (suspects) printSuspects(io, suspects);
  });
  return cmd;
}


/** Label suspects (`--suspects`): the backbone, its features of every image, k probes, confident learning. */
async function runSuspects(io: Io, data: string, opts: z.infer<typeof dataCommandSchema>): Promise<SuspectsResult> {
  const { tf, run } = await startInference(io, opts);
  const { findSuspects } = await import('../audit/suspects.js');
  const spinner = progress(io, 'label suspects', opts);
  const labels = labelsOf(opts);
  const result = await findSuspects(tf, {
    ...run, data, model: opts.model, ...(opts.inputSize ? { inputSize: opts.inputSize } : {}), labels, resize: opts.resize, maxPixels: opts.maxPixels, folds: opts.folds, seed: opts.seed,
    onProgress: (what, done, total) => spinner.update(what === 'features' ? `features ${done}/${total}` : `probes ${done}/${total}`),
  }).catch((err: unknown) => {
    spinner.fail();
    throw err;
  });
  spinner.succeed(`label suspects: ${result.suspects.length} of ${result.images} images`);
  return result;
}

/** A near-duplicate pair with what it means for training: its images' classes and splits. */
interface NearDuplicatePair {
  a: { rel: string; classes: string[]; split: string };
  b: { rel: string; classes: string[]; split: string };
  score: number;
  /** 'across splits' (a held-out image is nearly one the model trains on), 'across classes', or 'within a split'. */
  kind: 'across splits' | 'across classes' | 'within a split';
}

/** `--duplicates`: the near-duplicate pairs of every image that decodes, strongest first. */
async function findNearDuplicates(io: Io, dataset: Dataset, opts: { quiet?: boolean; json?: boolean }): Promise<NearDuplicatePair[]> {
  const { nearDuplicates } = await import('../data/near-duplicates.js');
  const { classesOf, SPLITS } = await import('../data/index.js');
  const spinner = progress(io, 'near-duplicates', opts);
  const items = SPLITS.flatMap((s) => dataset.splits[s]);
  const found = await nearDuplicates(items, (done, total) => spinner.update(`near-duplicates: thumbnails ${done}/${total}`));
  spinner.succeed(`near-duplicates: ${found.length} pair${found.length === 1 ? '' : 's'} among ${items.length} images`);
  const byRel = new Map(SPLITS.flatMap((s) => dataset.splits[s].map((item) => [item.rel, { item, split: s }] as const)));
  const side = (rel: string) => {
    const { item, split } = byRel.get(rel)!;
    return { rel, classes: classesOf(item).map((c) => dataset.classes[c]!), split };
  };
  return found.map((p) => {
    const [a, b] = [side(p.a), side(p.b)];
    const kind = a.split !== b.split ? 'across splits' : a.classes.join() !== b.classes.join() ? 'across classes' : 'within a split';
    return { a, b, score: p.score, kind };
  });
}

/** The near-duplicate pairs, those that straddle splits first. */
function printNearDuplicates(io: Io, pairs: NearDuplicatePair[]): void {
  const straddle = pairs.filter((p) => p.kind === 'across splits').length;
  io.out(`\nnear-duplicates (one picture resized, re-encoded or cropped): ${pairs.length} pair${pairs.length === 1 ? '' : 's'}${straddle ? `, ${straddle} across splits (a held-out image nearly one the model trains on)` : ''}\n`);
  if (pairs.length === 0) return;
  const order = ['across splits', 'across classes', 'within a split'];
  const table = new Table({ head: ['image', 'image', 'score', 'classes', 'splits'], style: { head: [], border: [] } });
  for (const p of [...pairs].sort((x, y) => order.indexOf(x.kind) - order.indexOf(y.kind))) table.push([p.a.rel, p.b.rel, p.score.toFixed(3), p.a.classes.join() === p.b.classes.join() ? p.a.classes.join(', ') : `${p.a.classes.join(', ')} / ${p.b.classes.join(', ')}`, p.a.split === p.b.split ? p.a.split : `${p.a.split} / ${p.b.split}`]);
  io.out(`${table.toString()}\n`);
}

/** The suspects, worst first, with the given and the likely label. */
function printSuspects(io: Io, result: SuspectsResult): void {
  io.out(`\nlabel suspects (confident learning, ${result.folds} folds of linear probes on ${result.model}'s features; out-of-fold accuracy ${result.probeAccuracy.toFixed(3)}): ${result.suspects.length} of ${result.images} images, worst first\n`);
  if (result.suspects.length === 0) return;
  const table = new Table({ head: ['image', 'given', 'p(given)', 'likely', 'p(likely)'], style: { head: [], border: [] } });
  for (const s of result.suspects) table.push([s.rel, s.given, s.givenProbability.toFixed(3), s.likely, s.likelyProbability.toFixed(3)]);
  io.out(`${table.toString()}\n`);
}
