// The images whose given label is probably wrong, by confident learning (Northcutt, Jiang and Chuang, "Confident
// Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021; cleanlab's `filter_by='confident_learning'`): one
// pass of the backbone gives every image's pooled features; k linear probes, each trained on the other folds, give
// every image out-of-fold class probabilities; a class's threshold is the mean probability of that class over the
// images labelled with it; an image counts toward the class whose probability passes its threshold (the likeliest such
// class), and it is a suspect when that class is not its given label. Worst first: the lowest probability of the
// given label.
import { createHash } from 'node:crypto';
import type { BackendChoice, Tf } from '../backend/index.js';
import { ImageSource, scanDataset, type ImageItem, type LabelsSpec, type ResizeMode, type SkippedFile } from '../data/index.js';
import { UsageError } from '../errors.js';
import { loadFeatureModel, runBatches } from '../inference/index.js';
import type { EngineName } from '../engine/names.js';
import { confidentLearning } from '../metrics/confident-learning.js';
import { fitProbe } from '../rank/probe.js';

export interface SuspectsOptions extends FeaturePassOptions {
  /** Folds of the out-of-fold probabilities (each probe trains on the others). */
  folds: number;
}

export interface Suspect {
  path: string;
  rel: string;
  given: string;
  likely: string;
  /** Out-of-fold probability of the given label, and of the likely one. */
  givenProbability: number;
  likelyProbability: number;
}

export interface SuspectsResult {
  data: string;
  model: string;
  images: number;
  classes: string[];
  folds: number;
  /** Per class: the mean out-of-fold probability of the class over the images labelled with it. */
  thresholds: number[];
  /** Out-of-fold accuracy of the probes against the given labels. */
  probeAccuracy: number;
  /** confidentJoint[given][likely]: images counted toward `likely` among those labelled `given`. */
  confidentJoint: number[][];
  suspects: Suspect[];
  skipped: SkippedFile[];
  seconds: number;
}

/** Each item's fold: within each class, items ordered by a seeded hash of their path, dealt out in turn. */
export function foldsOf(items: readonly ImageItem[], folds: number, seed: number): number[] {
  const out = new Array<number>(items.length);
  const byClass = new Map<number, number[]>();
  items.forEach((item, i) => byClass.set(item.label, [...(byClass.get(item.label) ?? []), i]));
  for (const members of byClass.values()) {
    const key = (i: number) => createHash('sha256').update(`${seed}\0folds\0${items[i]!.rel}`).digest('hex');
    members.map((i) => ({ i, k: key(i) })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)).forEach(({ i }, r) => (out[i] = r % folds));
  }
  return out;
}

/** What a pass of the backbone over a dataset needs. */
export interface FeaturePassOptions {
  data: string;
  labels?: LabelsSpec;
  model: string;
  inputSize?: number;
  batchSize: number;
  workers: number;
  backend: BackendChoice;
  engine: EngineName;
  store?: string;
  resize: ResizeMode;
  maxPixels: number;
  seed: number;
  onProgress?: (what: 'features' | 'probes', done: number, total: number) => void;
}

/** Every image of a dataset (whatever split it would fall in) with the backbone's pooled features, one row each. */
export interface DatasetFeatures {
  classes: string[];
  /** The images whose features were computed (those that decode), in row order. */
  items: ImageItem[];
  features: Float32Array;
  d: number;
  skipped: SkippedFile[];
}

/** One pass of `options.model`'s backbone over every image of the dataset; each image is decoded once, by that pass. */
export async function datasetFeatures(tf: Tf, options: FeaturePassOptions): Promise<DatasetFeatures> {
  const scan = await scanDataset(options.data, options.labels ? { labels: options.labels } : {});
  const items = scan.items;
  const im = await loadFeatureModel(tf, options.model, { ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.store ? { store: options.store } : {}) });
  const d = im.outputShape.reduce((a, b) => a * b, 1);
  const features = new Float32Array(items.length * d);
  const row = new Map(items.map((item, i) => [item.path, i]));
  const seen = new Set<number>();
  // Images that do not decode are skipped by the pass itself, and listed.
  const source = new ImageSource(items, { size: im.inputSize, resize: options.resize, maxPixels: options.maxPixels, cacheBytes: 0 });
  try {
    for await (const batch of runBatches(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine, ...(options.store ? { store: options.store } : {}) })) {
      batch.items.forEach((item, b) => {
        const i = row.get(item.path)!;
        seen.add(i);
        features.set(batch.outputs.subarray(b * d, (b + 1) * d), i * d);
      });
      options.onProgress?.('features', seen.size, items.length);
    }
  } finally {
    im.dispose();
  }
  const kept = [...seen].sort((a, b) => a - b);
  const out = new Float32Array(kept.length * d);
  kept.forEach((i, r) => out.set(features.subarray(i * d, (i + 1) * d), r * d));
  return { classes: scan.classes, items: kept.map((i) => items[i]!), features: out, d, skipped: [...scan.skipped, ...source.skipped] };
}

/** The dataset's label suspects, worst first. */
export async function findSuspects(tf: Tf, options: SuspectsOptions): Promise<SuspectsResult> {
  const started = performance.now();
  if (!Number.isInteger(options.folds) || options.folds < 2) throw new UsageError(`--folds ${options.folds}: at least 2 folds are needed (each probe trains on the others).`);
  // Every image, whatever split it would fall in: a wrong label anywhere is worth finding.
  const { classes: names, items: used, features, d, skipped } = await datasetFeatures(tf, options);
  const classes = names.length;
  const labels = Int32Array.from(used, (item) => item.label);
  const fold = foldsOf(used, options.folds, options.seed);
  const probs = new Float32Array(used.length * classes);
  const rowsOf = (which: (f: number) => boolean) => used.flatMap((_, r) => (which(fold[r]!) ? [r] : []));
  const pick = (rows: number[]) => {
    const out = new Float32Array(rows.length * d);
    rows.forEach((r, k) => out.set(features.subarray(r * d, (r + 1) * d), k * d));
    return { data: out, n: rows.length, d };
  };
  for (let f = 0; f < options.folds; f++) {
    const train = rowsOf((g) => g !== f);
    const held = rowsOf((g) => g === f);
    if (held.length === 0) continue;
    const probe = await fitProbe(tf, pick(train), Int32Array.from(train, (r) => labels[r]!), classes, options.seed + f);
    try {
      const p = probe.predict(pick(held));
      held.forEach((r, k) => probs.set(p.subarray(k * classes, (k + 1) * classes), r * classes));
    } finally {
      probe.dispose();
    }
    options.onProgress?.('probes', f + 1, options.folds);
  }
  let hits = 0;
  for (let r = 0; r < used.length; r++) {
    const p = probs.subarray(r * classes, (r + 1) * classes);
    if (p.indexOf(Math.max(...p)) === labels[r]) hits++;
  }
  const { thresholds, joint, issues } = confidentLearning(probs, labels, classes);
  const suspects = issues
    .map(({ row: r, likely }) => ({ path: used[r]!.path, rel: used[r]!.rel, given: names[labels[r]!]!, likely: names[likely]!, givenProbability: probs[r * classes + labels[r]!]!, likelyProbability: probs[r * classes + likely]! }))
    .sort((a, b) => a.givenProbability - b.givenProbability || b.likelyProbability - a.likelyProbability || (a.rel < b.rel ? -1 : 1));
  return { data: options.data, model: options.model, images: used.length, classes: names, folds: options.folds, thresholds, probeAccuracy: used.length ? hits / used.length : 0, confidentJoint: joint, suspects, skipped, seconds: (performance.now() - started) / 1000 };
}
