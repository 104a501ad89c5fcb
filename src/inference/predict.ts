// `tl predict`: class probabilities for images from a fine-tuned run or a registry classifier.
import { DEFAULT_RESIZE } from '../data/modes.js';
import { CORE_ENGINE } from '../engine/names.js';
import type { Tf } from '../backend/index.js';
import { ImageSource, listImages, type ImageItem, type SkippedFile } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { DownloadProgress } from '../weights/download.js';
import { loadClassifier, runBatchesTta, ttaViews, type RunOptions } from './index.js';
import { answerOf, type Answer } from './answer.js';
import { classifyWithOnnxFile, loadOnnxClassifier } from './onnx-file.js';
import { join } from 'node:path';
import { datasetDigest, finishShard, openShardFolder, shardOf, weightsDigest, type Shard } from '../shard/index.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface PredictOptions extends RunOptions {
  model: string;
  inputs: string[];
  top: number;
  onDownload?: (p: DownloadProgress) => void;
  /** Also write the predictions as JSON lines (one image per line, in input order) to this file. */
  out?: string;
  /** Only this shard's images; `out` is then a folder and the shard writes `<out>/shard-I-of-N/` for `tl merge`. */
  shard?: Shard;
}

export interface Prediction extends Answer {
  path: string;
}

export interface PredictResult {
  model: string;
  classes: string[];
  /** Several labels per image: each label's threshold (null: one label per image). */
  thresholds: number[] | null;
  predictions: Prediction[];
  skipped: SkippedFile[];
  /** The JSON lines file written (with `out`). */
  file?: string;
}

/** One image's line in predictions.jsonl. */
const line = (p: Prediction) => `${JSON.stringify(p)}\n`;

/**
 * Each row of `outputs` as a prediction: its `k` most probable classes and, with `thresholds` (several labels per
 * image), the labels at or above theirs.
 */
function predictionsOf(outputs: Float32Array, width: number, items: readonly ImageItem[], classes: string[], k: number, thresholds: number[] | null): Prediction[] {
  return items.map((item, i) => ({ path: item.path, ...answerOf(outputs.subarray(i * width, (i + 1) * width), classes, k, thresholds) }));
}

/**
 * Predictions from a .onnx file tl exported, on ONNX Runtime: its labels, preprocessing, input size and (where it says)
 * resize mode come from its metadata. Not sharded, and without --tta (they take a run folder).
 */
async function predictWithOnnxFile(options: PredictOptions, items: ImageItem[], skipped: SkippedFile[]): Promise<PredictResult> {
  if (options.shard || options.tta || options.ttaZoom) throw new UsageError(`${options.shard ? '--shard' : options.tta ? '--tta' : '--tta-zoom'} takes a run folder or a registry model; ${options.model} is an ONNX file.`);
  const model = await loadOnnxClassifier(options.model);
  const k = Math.min(options.top, model.classes.length);
  const predictions: Prediction[] = [];
  const failed: SkippedFile[] = [];
  for await (const batch of classifyWithOnnxFile(model, items, { batchSize: options.batchSize, ...(options.resize ? { resize: options.resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), skipped: failed })) {
    predictions.push(...predictionsOf(batch.outputs, model.classes.length, batch.items, model.classes, k, model.thresholds));
    options.onProgress?.(predictions.length, items.length);
  }
  if (options.out) await writeFileAtomic(options.out, predictions.map(line).join(''));
  return { model: model.name, classes: model.classes, thresholds: model.thresholds, predictions, skipped: [...skipped, ...failed], ...(options.out ? { file: options.out } : {}) };
}

/** The `top` most probable classes of every image. */
export async function predict(tf: Tf, options: PredictOptions): Promise<PredictResult> {
  const listed = await listImages(options.inputs);
  const { skipped } = listed;
  const shard = options.shard;
  const items = shard ? listed.items.filter((item) => shardOf(item.rel, shard.count) === shard.index) : listed.items;
  if (listed.items.length === 0) throw new UsageError(`No images to predict in ${options.inputs.join(', ')}${skipped.length ? ` (${skipped.map((s) => `${s.path}: ${s.reason}`).join('; ')})` : ''}.`);
  if (/\.onnx$/i.test(options.model)) return predictWithOnnxFile(options, items, skipped);
  const im = await loadClassifier(tf, options.model, { ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  try {
    const classes = im.classes!;
    const k = Math.min(options.top, classes.length);
    const source = new ImageSource(items, { size: im.inputSize, ...((options.resize ?? im.resize) ? { resize: options.resize ?? im.resize! } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
    const predictions: Prediction[] = [];
    for await (const batch of runBatchesTta(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? CORE_ENGINE, ...(options.store ? { store: options.store } : {}) }, ttaViews(options))) {
      predictions.push(...predictionsOf(batch.outputs, batch.width, batch.items, classes, k, im.thresholds ?? null));
      options.onProgress?.(predictions.length, items.length);
    }
    let file: string | undefined;
    if (shard && options.out) {
      const folder = await openShardFolder(options.out, shard);
      file = join(folder, 'predictions.jsonl');
      await writeFileAtomic(file, predictions.map(line).join(''));
      const position = new Map(listed.items.map((item, i) => [item.path, i]));
      const key = { model: im.name, weights: weightsDigest(im.model), top: k, inputSize: im.inputSize, preprocess: im.preprocess, resize: options.resize ?? im.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels ?? 0, engine: options.engine ?? CORE_ENGINE, tta: options.tta ?? false, ttaZoom: options.ttaZoom ?? false, images: listed.items.length, inputs: await datasetDigest(listed.items) };
      const rows = predictions.map((p) => ({ path: p.path, rel: listed.items[position.get(p.path)!]!.rel, position: position.get(p.path)! }));
      await finishShard(folder, { command: 'predict', shard, key }, rows, source.skipped, ['predictions.jsonl']);
    } else if (options.out) {
      file = options.out;
      await writeFileAtomic(file, predictions.map(line).join(''));
    }
    return { model: im.name, classes, thresholds: im.thresholds ?? null, predictions, skipped: [...skipped, ...source.skipped], ...(file ? { file } : {}) };
  } finally {
    im.dispose();
  }
}
