// `tl rank`: which pretrained model to start from, scored from one forward pass over the training split.
import { DEFAULT_RESIZE } from '../data/modes.js';
import type { EngineName } from '../engine/names.js';
import type { BackendChoice, Tf } from '../backend/index.js';
import { ImageSource, openDataset, type ResizeMode, type SkippedFile, type LabelsSpec } from '../data/index.js';
import { loadRankingModel, runBatches } from '../inference/index.js';
import { linearProbe, type ProbeResult } from './probe.js';
import { leep, logme, transrate } from '../metrics/transferability.js';

export interface RankOptions {
  data: string;
  /** Labels from a CSV file instead of class folders. */
  labels?: LabelsSpec;
  models: string[];
  batchSize: number;
  workers: number;
  backend: BackendChoice;
  engine: EngineName;
  /** The split `tl finetune` would make with the same fractions and seed; only its training images are scored. */
  val: number;
  test: number;
  seed: number;
  /** Default: the mode a tl run folder given as a model was trained with, else DEFAULT_RESIZE. */
  resize?: ResizeMode;
  maxPixels: number;
  inputSize?: number;
  /** Also train a linear head on the training split's features and validate it (the features of the validation split are computed too). */
  probe?: boolean;
  store?: string;
  onProgress?: (model: string, done: number, total: number) => void;
}

export interface RankRow {
  model: string;
  logme: number;
  transrate: number;
  /** Null where the model has no source classifier to score with. */
  leep: number | null;
  featureSize: number;
  inputSize: number;
  /** The linear probe's validation accuracy and loss (with `probe`; null without validation images). */
  probe?: ProbeResult | null;
  seconds: number;
}

export interface RankResult {
  data: string;
  classes: string[];
  images: number;
  /** Sorted by LogME, best first. */
  rows: RankRow[];
  skipped: SkippedFile[];
}

/** Scores every model on the dataset's training images; the rows come sorted by LogME. */
export async function rank(tf: Tf, options: RankOptions): Promise<RankResult> {
  // The split `tl finetune` makes (layout folders, fractions, seed), over the images that decode.
  const dataset = await openDataset(options.data, { val: options.val, test: options.test, seed: options.seed, size: 32, resize: options.resize, maxPixels: options.maxPixels, cacheBytes: 0, ...(options.labels ? { labels: options.labels } : {}) });
  const train = dataset.splits.train;
  const items = options.probe ? [...train, ...dataset.splits.val] : train;
  const labels = Int32Array.from(items, (item) => item.label);
  const rows: RankRow[] = [];
  for (const spec of options.models) {
    const started = performance.now();
    const { model, featureSize, sourceClasses } = await loadRankingModel(tf, spec, { ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.store ? { store: options.store } : {}) });
    const width = featureSize + sourceClasses;
    const features = new Float32Array(items.length * featureSize);
    const source = new Float32Array(items.length * sourceClasses);
    const row = new Map(items.map((item, i) => [item.path, i]));
    const seen = new Set<number>();
    const images = new ImageSource(items, { size: model.inputSize, resize: options.resize ?? model.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels, cacheBytes: 0 });
    try {
      for await (const batch of runBatches(tf, model, images, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine, ...(options.store ? { store: options.store } : {}) })) {
        batch.items.forEach((item, b) => {
          const i = row.get(item.path)!;
          seen.add(i);
          features.set(batch.outputs.subarray(b * width, b * width + featureSize), i * featureSize);
          if (sourceClasses > 0) source.set(batch.outputs.subarray(b * width + featureSize, (b + 1) * width), i * sourceClasses);
        });
        options.onProgress?.(model.name, seen.size, items.length);
      }
    } finally {
      model.dispose();
    }
    const kept = [...seen].filter((i) => i < train.length).sort((a, b) => a - b);
    const held = [...seen].filter((i) => i >= train.length).sort((a, b) => a - b);
    const pick = (from: Float32Array, w: number) => pickRows(from, w, kept);
    const y = Int32Array.from(kept, (i) => labels[i]!);
    const f = { data: pick(features, featureSize), n: kept.length, d: featureSize };
    rows.push({
      model: model.name,
      logme: logme(f, y),
      transrate: transrate(f, y),
      leep: sourceClasses > 0 ? leep({ data: pick(source, sourceClasses), n: kept.length, d: sourceClasses }, y) : null,
      ...(options.probe ? { probe: held.length === 0 ? null : await linearProbe(tf, f, y, { data: pickRows(features, featureSize, held), n: held.length, d: featureSize }, Int32Array.from(held, (i) => labels[i]!), dataset.classes.length, options.seed) } : {}),
      featureSize,
      inputSize: model.inputSize,
      seconds: (performance.now() - started) / 1000,
    });
  }
  rows.sort((a, b) => b.logme - a.logme);
  return { data: options.data, classes: dataset.classes, images: train.length, rows, skipped: dataset.skipped };
}

/** The rows `which` of a row-major array of rows `w` wide. */
function pickRows(from: Float32Array, w: number, which: number[]): Float32Array {
  const out = new Float32Array(which.length * w);
  which.forEach((i, r) => out.set(from.subarray(i * w, (i + 1) * w), r * w));
  return out;
}
