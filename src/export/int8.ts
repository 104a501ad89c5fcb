// `tl export --quantize int8`: the run's ONNX model quantized on a few hundred of its own training images (or a folder
// of images given with --calibration), then checked against float32 on the run's test split, so an int8 model that
// answers differently says so when it is written.
import { stat } from 'node:fs/promises';
import { ImageSource, listImages, RESIZE_MODES, preprocessPixels, readSplitRecord, runFile, scanDataset, type ImageItem } from '../data/index.js';
import { UsageError } from '../errors.js';
import { quantizeInt8, type CalibrationBatch, type Int8Result } from '../onnx/int8.js';
import { OnnxSession } from '../onnx/runtime.js';
import type { TrainedModelMeta } from '../registry/metadata.js';
import { prng } from '../util/random.js';
import { argmax, concatFloat32 } from '../util/arrays.js';
import { computeMetrics } from '../metrics/classification.js';

export interface Int8Options {
  /** The run folder the model came from (its training split calibrates, its test split checks), if it is one. */
  run: string | null;
  /** A folder of images to calibrate on instead of the run's training split. */
  calibration?: string;
  /** How many calibration images (a seeded sample). */
  images: number;
}

/** float32 against int8 on the run's test split. */
export interface Int8Check {
  images: number;
  float32: { accuracy: number; logLoss: number };
  int8: { accuracy: number; logLoss: number };
  /** Share of images whose top-1 label is the same for both. */
  agreement: number;
}

export interface Int8Export extends Omit<Int8Result, 'bytes'> {
  calibratedOn: string;
  check: Int8Check | null;
}

const BATCH = 16;

/** The run's images of `split`, labelled by the model's classes (none when the run has no split record or its dataset is gone). */
export async function runSplit(run: string, split: 'train' | 'test', classes: string[]): Promise<ImageItem[]> {
  const record = await readSplitRecord(run, 'Pass --calibration DIR.');
  if (!record || !(await stat(record.root).catch(() => null))) return [];
  const scan = await scanDataset(record.root, record.labels ? { labels: record.labels } : {});
  const byRel = new Map(scan.items.map((item) => [item.rel, item]));
  return Object.entries(record.files).filter(([, s]) => s === split).flatMap(([rel]) => {
    const item = byRel.get(rel);
    const label = item ? classes.indexOf(scan.classes[item.label]!) : -1;
    return item && label >= 0 ? [{ ...item, label }] : [];
  });
}

export async function* batches(items: ImageItem[], meta: TrainedModelMeta): AsyncGenerator<CalibrationBatch & { items: ImageItem[] }> {
  const size = meta.inputSize;
  const resize = RESIZE_MODES.find((m) => m === meta.resize);
  const source = new ImageSource(items, { size, ...(resize ? { resize } : {}), cacheBytes: 0 });
  for await (const b of source.batches(items, { batchSize: BATCH })) yield { data: preprocessPixels(b.pixels, meta.preprocess), shape: [b.items.length, size, size, 3], items: b.items };
}

export async function score(model: Uint8Array, test: (CalibrationBatch & { items: ImageItem[] })[], classes: string[]): Promise<{ top: number[]; accuracy: number; logLoss: number }> {
  const session = await OnnxSession.open(model);
  const probs: Float32Array[] = [];
  try {
    for (const b of test) probs.push((await session.run([b]))[0]!);
  } finally {
    await session.close();
  }
  const joined = concatFloat32(probs);
  const labels = test.flatMap((b) => b.items.map((i) => i.label));
  const m = computeMetrics(joined, labels, classes);
  const top = labels.map((_, i) => argmax(joined, i * classes.length, classes.length));
  return { top, accuracy: m.accuracy, logLoss: m.logLoss };
}

/** `full` (the float32 export of a classifier described by `meta`) quantized to int8, with its check. */
export async function exportInt8(full: Uint8Array, meta: TrainedModelMeta, options: Int8Options): Promise<{ bytes: Uint8Array; info: Int8Export }> {
  let pool: ImageItem[];
  let calibratedOn: string;
  if (options.calibration) {
    pool = (await listImages([options.calibration])).items;
    calibratedOn = options.calibration;
  } else {
    pool = options.run && (await stat(runFile(options.run, 'split')).catch(() => null)) ? await runSplit(options.run, 'train', meta.classes) : [];
    calibratedOn = `${options.run ?? ''} (training split)`;
    if (pool.length === 0) throw new UsageError(`--quantize int8 calibrates on images: ${options.run ? `${options.run} has no training split whose images are still there` : 'a registry or downloaded model has no training split'}.`, { suggestion: 'Pass --calibration DIR with a few hundred images like those the model will see.' });
  }
  if (pool.length === 0) throw new UsageError(`--calibration ${options.calibration}: no images there.`);
  // A seeded sample, in a fixed order: the same run quantizes to the same file.
  const random = prng(20_240_501);
  const sample = pool.map((item) => [random(), item] as const).sort((a, b) => a[0] - b[0]).slice(0, options.images).map(([, item]) => item);
  const q = await quantizeInt8(full, batches(sample, meta));
  let check: Int8Check | null = null;
  const testItems = options.run ? await runSplit(options.run, 'test', meta.classes) : [];
  if (testItems.length > 0) {
    const test: (CalibrationBatch & { items: ImageItem[] })[] = [];
    for await (const b of batches(testItems, meta)) test.push(b);
    const a = await score(full, test, meta.classes);
    const b = await score(q.bytes, test, meta.classes);
    check = { images: a.top.length, float32: { accuracy: a.accuracy, logLoss: a.logLoss }, int8: { accuracy: b.accuracy, logLoss: b.logLoss }, agreement: a.top.filter((t, i) => t === b.top[i]).length / a.top.length };
  }
  const { bytes, ...rest } = q;
  return { bytes, info: { ...rest, calibratedOn, check } };
}
