// `tl extract`: a pretrained model's features for every image, streamed to .npy (+ index CSV), CSV or JSON lines.
import { DEFAULT_RESIZE } from '../data/modes.js';
import type { EngineName } from '../engine/names.js';
import { CORE_ENGINE } from '../engine/names.js';
import { stat } from 'node:fs/promises';
import type { BackendChoice, Tf } from '../backend/index.js';
import { atPath, DatasetError } from '../errors.js';
import { notice } from '../util/notice.js';
import { ImageSource, LabelConflictError, listImages, scanDataset, type ImageItem, type LabelsSpec, type ResizeMode, type SkippedFile } from '../data/index.js';
import { assignSplits } from '../data/split.js';
import { loadFeatureModel, runBatches } from '../inference/index.js';
import type { PreprocessMode } from '../registry/index.js';
import type { DownloadProgress } from '../weights/download.js';
import { checkOutputPath } from '../util/atomic.js';
import { csvWriter, jsonlWriter, npyWriter, type FeatureWriter } from './writers.js';
import { basename, join } from 'node:path';
import { datasetDigest, finishShard, openShardFolder, shardOf, weightsDigest, type Shard } from '../shard/index.js';

export const FEATURE_FORMATS = ['npy', 'csv', 'jsonl'] as const;
export type FeatureFormat = (typeof FEATURE_FORMATS)[number];

export interface ExtractOptions {
  /** A dataset folder (class folders: class and split go in the index), or image files and folders. */
  inputs: string[];
  /** Labels of the dataset folder from a CSV file instead of class folders. */
  labels?: LabelsSpec;
  model: string;
  layer?: string;
  out: string;
  format: FeatureFormat;
  batchSize: number;
  workers: number;
  backend: BackendChoice;
  /** Inference engine (default tfjs); `onnx` runs the model on ONNX Runtime. */
  engine?: EngineName;
  val: number;
  test: number;
  seed: number;
  /** Default: the mode a tl run folder given as the model was trained with, else DEFAULT_RESIZE. */
  resize?: ResizeMode;
  maxPixels: number;
  inputSize?: number;
  preprocess?: PreprocessMode;
  weights?: 'pretrained' | 'random';
  store?: string;
  onProgress?: (done: number, total: number) => void;
  onDownload?: (p: DownloadProgress) => void;
  /**
   * Only this shard's images (by a hash of each path relative to the dataset root); `out` is then a folder, and the
   * shard writes `<out>/shard-I-of-N/` (the outputs, then manifest.json) for `tl merge`.
   */
  shard?: Shard;
}

export interface ExtractResult {
  files: string[];
  count: number;
  /** Shape of the written array: [count, ...feature shape]. */
  shape: number[];
  model: string;
  layer: string;
  dataset: boolean;
  skipped: SkippedFile[];
  seconds: number;
  imagesPerSecond: number;
  /** With a shard: its folder and which shard it is. */
  shard?: { index: number; count: number; source: string; folder: string; images: number };
}

/** The index path beside a .npy file: features.npy -> features.index.csv. */
export function indexPathFor(out: string): string {
  return `${out.replace(/\.npy$/i, '')}.index.csv`;
}

/** The images to extract, with class and split when the input is one dataset folder. */
async function collect(options: ExtractOptions): Promise<{ items: ImageItem[]; classes: string[]; splits: Map<string, string>; skipped: SkippedFile[]; dataset: boolean }> {
  if (options.inputs.length === 1 && (await stat(options.inputs[0]!).catch(() => null))?.isDirectory()) {
    const scan = await scanDataset(options.inputs[0]!, options.labels ? { labels: options.labels } : {}).catch((err: unknown) => {
      if (!(err instanceof DatasetError) || err instanceof LabelConflictError || options.labels) throw err;
      notice(`${options.inputs[0]} is not a dataset folder (${err.message.replace(/\.$/, '')}); extracting its images without class or split`);
      return null;
    });
    if (scan) {
      const splitMap = assignSplits(scan.items, { val: options.val, test: options.test, seed: options.seed });
      return { items: scan.items, classes: scan.classes, splits: new Map(Object.entries(splitMap)), skipped: scan.skipped, dataset: true };
    }
  }
  const listed = await listImages(options.inputs);
  return { ...listed, classes: [], splits: new Map(), dataset: false };
}

/** Extracts features of every image and writes them; memory stays flat (nothing is kept per image). */
export async function extract(tf: Tf, options: ExtractOptions): Promise<ExtractResult> {
  const started = performance.now();
  const shard = options.shard;
  let folder: string | null = null;
  if (shard) {
    // A shard writes into its own folder; a previous attempt's manifest goes first, so a failed re-run is never
    // taken for a complete shard.
    folder = await openShardFolder(options.out, shard);
    options = { ...options, out: join(folder, `features.${options.format}`) };
  }
  await checkOutputPath(options.out);
  if (options.format === 'npy') await checkOutputPath(indexPathFor(options.out));
  const collected = await collect(options);
  const { classes, splits, skipped, dataset } = collected;
  const all = collected.items;
  const items = shard ? all.filter((item) => shardOf(item.rel, shard.count) === shard.index) : all;
  const position = new Map(all.map((item, i) => [item, i]));
  const rows: { path: string; rel: string; position: number }[] = [];
  const im = await loadFeatureModel(tf, options.model, { ...(options.layer ? { layer: options.layer } : {}), ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.weights ? { weights: options.weights } : {}), seed: options.seed, ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  const width = im.outputShape.reduce((a, b) => a * b, 1);
  let writer: FeatureWriter | null = null;
  let count = 0;
  const resize = options.resize ?? im.resize ?? DEFAULT_RESIZE;
  const source = new ImageSource(items, { size: im.inputSize, resize, maxPixels: options.maxPixels, cacheBytes: 0 });
  try {
    writer = options.format === 'npy' ? await npyWriter(options.out, indexPathFor(options.out), im.outputShape) : options.format === 'csv' ? await csvWriter(options.out, width) : await jsonlWriter(options.out, width);
    for await (const batch of runBatches(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? CORE_ENGINE, ...(options.store ? { store: options.store } : {}) })) {
      await writer.write(batch.items.map((item) => ({ path: item.path, class: item.label >= 0 ? classes[item.label]! : '', split: item.split ?? splits.get(item.rel) ?? '' })), batch.outputs);
      if (shard) for (const item of batch.items) rows.push({ path: item.path, rel: item.rel, position: position.get(item)! });
      count += batch.items.length;
      options.onProgress?.(count, items.length);
    }
    await writer.finish();
    if (shard && folder) {
      const key = { model: im.name, weights: weightsDigest(im.model), layer: im.outputLayer, format: options.format, inputSize: im.inputSize, preprocess: im.preprocess, resize, maxPixels: options.maxPixels, seed: options.seed, val: options.val, test: options.test, engine: options.engine ?? CORE_ENGINE, images: all.length, dataset: await datasetDigest(all) };
      await finishShard(folder, { command: 'extract', shard, key }, rows, source.skipped, writer.files.map((f) => basename(f)));
    }
  } catch (err) {
    await writer?.abort();
    throw atPath(err, options.out);
  } finally {
    im.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  return { files: writer.files, count, shape: [count, ...im.outputShape], model: im.name, layer: im.outputLayer, dataset, skipped: [...skipped, ...source.skipped], seconds, imagesPerSecond: count / seconds, ...(shard && folder ? { shard: { ...shard, folder, images: items.length } } : {}) };
}
