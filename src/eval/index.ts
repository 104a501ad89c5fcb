// `tl eval`: metrics of a fine-tuned run on its own held-out split (or on another labelled folder).
import { DEFAULT_RESIZE } from '../data/modes.js';
import { CORE_ENGINE } from '../engine/names.js';
import { stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Tf } from '../backend/index.js';
import { classesOf, ImageSource, readSplitRecord, scanDataset, type ImageItem, type SkippedFile } from '../data/index.js';
import { DatasetError, ModelNotFoundError, UsageError } from '../errors.js';
import { loadClassifier, runBatchesTta, ttaViews, type InferenceModel, type RunOptions } from '../inference/index.js';
import { classifyWithOnnxFile, loadOnnxClassifier } from '../inference/onnx-file.js';
import { computeMetrics, type Metrics } from '../metrics/classification.js';
import { computeMultiLabelMetrics, type MultiLabelMetrics } from '../metrics/multilabel.js';
import { targetRows } from '../model/loss.js';
import { npyHeader } from '../util/npy.js';
import { datasetDigest, finishShard, openShardFolder, shardOf, weightsDigest, type Shard } from '../shard/index.js';
import { writeFileAtomic } from '../util/atomic.js';
import { concatFloat32 } from '../util/arrays.js';
import { REPORT_SCHEMA_VERSION, writeReports } from '../report/index.js';
import { TL_VERSION } from '../version.js';

export const EVAL_SPLITS = ['test', 'val', 'train', 'all'] as const;
export type EvalSplit = (typeof EVAL_SPLITS)[number];

export interface EvalOptions extends RunOptions {
  run: string;
  /** A labelled folder; default: the dataset the run was trained on. */
  data?: string;
  split: EvalSplit;
  /**
   * Only this shard's images: their probabilities go to `<shardOut>/shard-I-of-N/` (probs.npy, rows.jsonl, the
   * manifest) and `tl merge` computes the metrics of them all.
   */
  shard?: Shard;
  shardOut?: string;
}

export interface EvalResult {
  run: string;
  model: string;
  data: string;
  /** The split evaluated, or 'all' for a folder that is not the run's dataset. */
  split: EvalSplit;
  /** Whether the images are exactly those the run's split.json lists for `split`. */
  usedRunSplit: boolean;
  classes: string[];
  /** Images evaluated. */
  count: number;
  /** One label per image: the metrics (null for a run with several labels per image). */
  metrics: Metrics | null;
  /** Several labels per image: the metrics at the labels' thresholds the model carries (null otherwise). */
  multiLabel: MultiLabelMetrics | null;
  /** Several labels per image: each label's threshold. */
  thresholds?: number[];
  skipped: SkippedFile[];
  seconds: number;
  imagesPerSecond: number;
}

/** Evaluates the run in `options.run` and returns its metrics (the caller writes the report). */
export async function evaluate(tf: Tf, options: EvalOptions): Promise<EvalResult> {
  const started = performance.now();
  const info = await stat(options.run).catch(() => null);
  if (info === null) throw new ModelNotFoundError(`No run at ${options.run}: the folder does not exist.`, { suggestion: 'Pass the folder tl finetune wrote (it prints "wrote <folder>" at the end).' });
  if (!info.isDirectory() && /\.onnx$/i.test(options.run)) return evaluateOnnxFile(options, started);
  if (!info.isDirectory()) throw new UsageError(`--model ${options.run} is a file; tl eval takes the run folder tl finetune wrote, or a .onnx file tl exported.`);
  const record = await readSplitRecord(options.run, 'Pass a DATA folder to evaluate on it whole.');
  if (record === null && options.data === undefined) {
    throw new UsageError(`${options.run} has no split.json, so its held-out images are unknown; pass a DATA folder to evaluate on.`);
  }
  const data = options.data ?? record!.root;
  if (options.data === undefined && (await stat(data).catch(() => null)) === null) {
    throw new DatasetError(`The dataset of ${options.run} is gone from ${data} (the path its split.json records${isAbsolute(data) ? '' : `, relative to the folder tl finetune ran in; this is ${process.cwd()}`}).`, { suggestion: `Run tl eval from that folder, or pass the dataset: tl eval --model ${options.run} DATA.` });
  }
  // The run's own images are labelled as the run read them (class folders, or its --labels CSV file; one or several
  // labels per image).
  const multiLabel = record?.multiLabel;
  const scan = await scanDataset(data, { ...(record?.labels && options.data === undefined ? { labels: record.labels } : {}), ...(multiLabel ? { multiLabel } : {}) });
  const skipped: SkippedFile[] = [...scan.skipped];
  const wanted = record ? Object.entries(record.files).filter(([, s]) => options.split === 'all' || s === options.split).map(([rel]) => rel) : [];
  const byRel = new Map(scan.items.map((item) => [item.rel, item]));
  // The run's own dataset when it still holds every file the split names; otherwise a foreign folder, used whole.
  const usedRunSplit = wanted.length > 0 && wanted.every((rel) => byRel.has(rel));
  if (!usedRunSplit && options.split !== 'all' && options.data === undefined) {
    const missing = wanted.filter((rel) => !byRel.has(rel));
    throw new UsageError(`${missing.length} of the ${wanted.length} ${options.split} images of ${options.run} are gone from ${data} (e.g. ${missing[0] ?? '?'}).`, { suggestion: 'Restore the dataset, or pass a DATA folder to evaluate on all its images.' });
  }
  const im = await loadClassifier(tf, options.run, options.store ? { store: options.store } : {});
  try {
    const classes = im.classes!;
    if (Boolean(im.thresholds) !== Boolean(multiLabel)) throw new UsageError(`${options.run}: its model has ${im.thresholds ? 'several labels' : 'one label'} per image but its split.json says ${multiLabel ? 'several' : 'one'}: the run folder is damaged.`);
    if (im.thresholds) return await evaluateLabelSets(tf, im, options, { data, scan, skipped, items: usedRunSplit ? wanted.map((rel) => byRel.get(rel)!) : scan.items, usedRunSplit, started });
    const items: ImageItem[] = [];
    for (const item of usedRunSplit ? wanted.map((rel) => byRel.get(rel)!) : scan.items) {
      const label = classes.indexOf(scan.classes[item.label]!);
      if (label < 0) skipped.push({ path: item.path, reason: `class '${scan.classes[item.label]}' is not one of the model's classes` });
      else items.push({ ...item, label });
    }
    if (items.length === 0) throw new UsageError(`No images of the model's classes (${classes.join(', ')}) to evaluate in ${data}.`);
    const all = items.slice();
    const shard = options.shard;
    if (shard) items.splice(0, items.length, ...all.filter((item) => shardOf(item.rel, shard.count) === shard.index));
    const source = new ImageSource(items, { size: im.inputSize, ...((options.resize ?? im.resize) ? { resize: options.resize ?? im.resize! } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
    const probs: Float32Array[] = [];
    const labels: number[] = [];
    const paths: string[] = [];
    for await (const batch of runBatchesTta(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? CORE_ENGINE, ...(options.store ? { store: options.store } : {}) }, ttaViews(options))) {
      probs.push(batch.outputs);
      for (const item of batch.items) {
        labels.push(item.label);
        paths.push(item.path);
      }
      options.onProgress?.(labels.length, items.length);
    }
    skipped.push(...source.skipped);
    const joined = new Float32Array(labels.length * classes.length);
    let at = 0;
    for (const p of probs) {
      joined.set(p, at);
      at += p.length;
    }
    if (shard && options.shardOut) {
      const folder = await openShardFolder(options.shardOut, shard);
      const npy = Buffer.concat([npyHeader([labels.length, classes.length]), Buffer.from(joined.buffer, joined.byteOffset, joined.byteLength)]);
      await writeFileAtomic(join(folder, 'probs.npy'), npy);
      const rows = paths.map((path, i) => `${JSON.stringify({ path, label: labels[i] })}\n`).join('');
      await writeFileAtomic(join(folder, 'rows.jsonl'), rows);
      const position = new Map(all.map((item, i) => [item.path, i]));
      const relOf = new Map(all.map((item) => [item.path, item.rel]));
      const key = { run: options.run, model: im.name, weights: weightsDigest(im.model), classes: JSON.stringify(classes), data, split: usedRunSplit ? options.split : 'all', usedRunSplit, resize: options.resize ?? im.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels ?? 0, engine: options.engine ?? CORE_ENGINE, tta: options.tta ?? false, ttaZoom: options.ttaZoom ?? false, images: all.length, dataset: await datasetDigest(all) };
      await finishShard(folder, { command: 'eval', shard, key }, paths.map((path) => ({ path, rel: relOf.get(path)!, position: position.get(path)! })), skipped, ['probs.npy', 'rows.jsonl']);
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      run: options.run,
      model: im.name,
      data,
      split: usedRunSplit ? options.split : 'all',
      usedRunSplit,
      classes,
      count: labels.length,
      metrics: computeMetrics(joined, labels, classes, { paths }),
      multiLabel: null,
      skipped,
      seconds,
      imagesPerSecond: labels.length / seconds,
    };
  } finally {
    im.dispose();
  }
}

/**
 * A run with several labels per image, on its split's images (or a folder's): each image's labels against the
 * model's outputs at the thresholds it carries. An image with a label the model does not know is skipped.
 */
async function evaluateLabelSets(tf: Tf, im: InferenceModel, options: EvalOptions, at: { data: string; scan: Awaited<ReturnType<typeof scanDataset>>; skipped: SkippedFile[]; items: ImageItem[]; usedRunSplit: boolean; started: number }): Promise<EvalResult> {
  if (options.shard) throw new UsageError(`--shard: ${options.run} has several labels per image, which tl merge does not join yet; evaluate it on one machine.`);
  const classes = im.classes!;
  const k = classes.length;
  const { scan, skipped } = at;
  const truthOf = new Map<string, number[]>();
  const items: ImageItem[] = [];
  for (const item of at.items) {
    const names = classesOf(item).map((l) => scan.classes[l]!);
    const unknown = names.filter((n) => !classes.includes(n));
    if (unknown.length > 0) skipped.push({ path: item.path, reason: `label '${unknown[0]}' is not one of the model's labels` });
    else {
      truthOf.set(item.path, names.map((n) => classes.indexOf(n)));
      items.push(item);
    }
  }
  if (items.length === 0) throw new UsageError(`No images with only the model's labels (${classes.join(', ')}) to evaluate in ${at.data}.`);
  const source = new ImageSource(items, { size: im.inputSize, ...((options.resize ?? im.resize) ? { resize: options.resize ?? im.resize! } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
  const probs: Float32Array[] = [];
  const truth: Float32Array[] = [];
  let count = 0;
  for await (const batch of runBatchesTta(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? CORE_ENGINE, ...(options.store ? { store: options.store } : {}) }, ttaViews(options))) {
    probs.push(batch.outputs);
    truth.push(targetRows(batch.items.map((item) => truthOf.get(item.path)!), k));
    count += batch.items.length;
    options.onProgress?.(count, items.length);
  }
  skipped.push(...source.skipped);
  const seconds = (performance.now() - at.started) / 1000;
  return { run: options.run, model: im.name, data: at.data, split: at.usedRunSplit ? options.split : 'all', usedRunSplit: at.usedRunSplit, classes, count, metrics: null, multiLabel: computeMultiLabelMetrics(concatFloat32(probs), concatFloat32(truth), classes, im.thresholds!), thresholds: im.thresholds!, skipped, seconds, imagesPerSecond: count / seconds };
}

/**
 * An exported .onnx classifier on a labelled folder (whole: a file has no split record), with the labels,
 * preprocessing and resize mode its metadata gives.
 */
async function evaluateOnnxFile(options: EvalOptions, started: number): Promise<EvalResult> {
  if (options.shard || options.tta || options.ttaZoom) throw new UsageError(`${options.shard ? '--shard' : options.tta ? '--tta' : '--tta-zoom'} takes a run folder; ${options.run} is an ONNX file.`);
  if (options.data === undefined) throw new UsageError(`${options.run} is an ONNX file, which records no split: pass the labelled folder to evaluate it on (tl eval --model ${options.run} DATA).`);
  const model = await loadOnnxClassifier(options.run);
  if (model.thresholds) throw new UsageError(`${options.run} has several labels per image: evaluate its run folder (tl eval --model RUN), which knows each image's labels.`);
  const scan = await scanDataset(options.data);
  const skipped: SkippedFile[] = [...scan.skipped];
  const items: ImageItem[] = [];
  for (const item of scan.items) {
    const label = model.classes.indexOf(scan.classes[item.label]!);
    if (label < 0) skipped.push({ path: item.path, reason: `class '${scan.classes[item.label]}' is not one of the model's classes` });
    else items.push({ ...item, label });
  }
  if (items.length === 0) throw new UsageError(`No images of the model's classes (${model.classes.join(', ')}) to evaluate in ${options.data}.`);
  const probs: Float32Array[] = [];
  const labels: number[] = [];
  const paths: string[] = [];
  for await (const batch of classifyWithOnnxFile(model, items, { batchSize: options.batchSize, ...(options.resize ? { resize: options.resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), skipped })) {
    probs.push(batch.outputs);
    for (const item of batch.items) {
      labels.push(item.label);
      paths.push(item.path);
    }
    options.onProgress?.(labels.length, items.length);
  }
  const joined = concatFloat32(probs);
  const seconds = (performance.now() - started) / 1000;
  return { run: options.run, model: model.name, data: options.data, split: 'all', usedRunSplit: false, classes: model.classes, count: labels.length, metrics: computeMetrics(joined, labels, model.classes, { paths }), multiLabel: null, skipped, seconds, imagesPerSecond: labels.length / seconds };
}

/** Where an evaluation's reports go by default: `<run>/eval-<split>`, or `<file>-eval` beside an ONNX file. */
export const defaultEvalOut = (result: Pick<EvalResult, 'run' | 'split'>) => (/\.onnx$/i.test(result.run) ? `${result.run.replace(/\.onnx$/i, '')}-eval` : join(result.run, `eval-${result.split}`));

/** Writes an evaluation's reports (report.json, .md, .html) into `out` (default: <run>/eval-<split>); returns their paths. */
export async function writeEvalReports(result: EvalResult, backend: string, out = defaultEvalOut(result)): Promise<string[]> {
  return writeReports(out, { schemaVersion: REPORT_SCHEMA_VERSION, kind: 'eval', tlVersion: TL_VERSION, createdAt: new Date().toISOString(), backend, model: result.model, classes: result.classes, skipped: result.skipped, seconds: result.seconds, run: result.run, data: result.data, split: result.split, usedRunSplit: result.usedRunSplit, metrics: result.metrics, ...(result.multiLabel ? { multiLabel: result.multiLabel } : {}), imagesPerSecond: result.imagesPerSecond });
}
