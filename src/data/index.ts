// Folder datasets: scan, validate by decoding, split, and summarise.
import { DatasetError } from '../errors.js';
import { decodeFailureReason, imageSize, type ResizeMode } from './decode.js';
import { ImageSource } from './loader.js';
import { classesOf, mapLimit, scanDataset, SPLITS, type ImageItem, type MultiLabelSpec, type ScanResult, type SkippedFile, type SplitName } from './scan.js';
import { assignSplits, type SplitMap } from './split.js';

export { ImageSource, type Batch } from './loader.js';
export type { LabelsSpec } from './csv.js';
export { readSplitRecord, RUN_FILES, runFile, splitRecordSchema, type SplitRecord } from './run-files.js';
export { preprocess, preprocessPixels, PREPROCESS_MODES } from './preprocess.js';
export { AUGMENT_LEVELS, type AugmentLevel } from './augment.js';
export { RESIZE_MODES, type ResizeMode } from './decode.js';
export { classesOf, describeConflicts, LabelConflictError, listImages, scanDataset, SPLITS, type ImageItem, type LabelConflict, type MultiLabelSpec, type SkippedFile, type SplitName } from './scan.js';
export type { SplitMap } from './split.js';
import type { LabelsSpec } from './csv.js';

export interface DatasetOptions {
  val: number;
  test: number;
  seed: number;
  size: number;
  resize?: ResizeMode;
  maxPixels?: number;
  cacheBytes?: number;
  /** A saved split (from a run) to reuse instead of computing one. */
  splitMap?: SplitMap;
  onProgress?: (done: number, total: number) => void;
  /** Checked between images while decoding: true ends decoding early (the dataset is then incomplete). */
  shouldStop?: () => boolean;
  /**
   * Paths (relative to the root) already known to decode, e.g. the images a frozen-part cache holds outputs for: they
   * are not decoded to validate them. Every other image is.
   */
  known?: ReadonlySet<string>;
  /** Keep going when an image is under two classes (`tl data`, which lists them); otherwise that is an error. */
  allowConflicts?: boolean;
  /** Labels from a CSV file instead of class folders. */
  labels?: LabelsSpec;
  /** Several labels per image (a sigmoid classifier): from a CSV cell, repeated rows, or one image under two folders. */
  multiLabel?: MultiLabelSpec;
}

export interface Dataset {
  root: string;
  layout: ScanResult['layout'];
  /** How a pre-split layout's folders were read, and which splits were held out of its train folder. */
  layoutNotes: string[];
  classes: string[];
  /** Items that decode, by split. */
  splits: Record<SplitName, ImageItem[]>;
  splitMap: SplitMap;
  seed: number;
  source: ImageSource;
  /** Every file skipped, at scan or decode time, with the reason. */
  skipped: SkippedFile[];
  ignored: ScanResult['ignored'];
  conflicts: ScanResult['conflicts'];
  duplicates: ScanResult['duplicates'];
  outside: ScanResult['outside'];
  /** Multi-label: the distinct label sets the items' `label` numbers; null for a single-label dataset. */
  labelSets: number[][] | null;
}

/** Images per class in `items` (an image counts under each of its labels). */
export function classCounts(items: readonly ImageItem[], classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const item of items) for (const c of classesOf(item)) counts[c]!++;
  return counts;
}

/** Scans, decodes every image once (so bad files are found before training), and splits. */
export async function openDataset(root: string, options: DatasetOptions): Promise<Dataset> {
  const scan = await scanDataset(root, { allowConflicts: options.allowConflicts ?? false, ...(options.labels ? { labels: options.labels } : {}), ...(options.multiLabel ? { multiLabel: options.multiLabel } : {}) });
  const source = new ImageSource(scan.items, { size: options.size, ...(options.resize ? { resize: options.resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), ...(options.cacheBytes !== undefined ? { cacheBytes: options.cacheBytes } : {}) });
  const known = options.known;
  const checked = new Set(await source.validate(known ? scan.items.filter((i) => !known.has(i.rel)) : scan.items, options.onProgress, options.shouldStop));
  const good = scan.items.filter((i) => checked.has(i) || known?.has(i.rel) === true);
  if (!options.shouldStop?.()) requireDecodable(root, scan, good, source.skipped);
  const splitMap = options.splitMap ?? assignSplits(good, { val: options.val, test: options.test, seed: options.seed });
  const splits: Record<SplitName, ImageItem[]> = { train: [], val: [], test: [] };
  for (const item of good) {
    const split = splitMap[item.rel];
    if (split) splits[split].push(item);
  }
  return { root, layout: scan.layout, layoutNotes: layoutNotes(scan, options), classes: scan.classes, splits, splitMap, seed: options.seed, source, skipped: [...scan.skipped, ...source.skipped], ignored: scan.ignored, conflicts: scan.conflicts, duplicates: scan.duplicates, outside: scan.outside, labelSets: scan.labelSets };
}

/** In words: which folder gave each split of a pre-split layout, and what was held out of train for the others. */
function layoutNotes(scan: ScanResult, options: { val: number; test: number; seed: number }): string[] {
  if (scan.layout === 'csv') return scan.labelsNote ? [scan.labelsNote] : [];
  if (scan.layout !== 'pre-split') return [];
  const names = { train: 'training', val: 'validation', test: 'test' } as const;
  const folders = SPLITS.flatMap((s) => (scan.splitFolders[s] ?? []).map((f) => `${f}/ as ${names[s]}`));
  const notes = [`pre-split folders: ${folders.join(', ')}`];
  const train = (scan.splitFolders.train ?? []).map((f) => `${f}/`).join(' and ');
  for (const s of ['val', 'test'] as const) {
    if (scan.splitFolders[s] || options[s] === 0) continue;
    notes.push(`no ${names[s]} folder: ${Math.round(options[s] * 100)}% of ${train} is held out as the ${names[s]} split (per class, seed ${options.seed}; --${s} sets the share)`);
  }
  return notes;
}

/** `n` skipped files grouped by reason, e.g. "300 too many pixels, 2 truncated or corrupt image". */
function reasons(skipped: readonly SkippedFile[]): string {
  const counts = new Map<string, number>();
  for (const s of skipped) {
    const key = s.reason.replace(/\s*\(.*$/, '');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${n} ${r}`).join(', ');
}

/** Every class needs an image that decodes, as every class folder needs an image. */
function requireDecodable(root: string, scan: ScanResult, good: readonly ImageItem[], decodeSkipped: readonly SkippedFile[]): void {
  const tooLarge = decodeSkipped.some((s) => s.reason.startsWith('too many pixels'));
  const suggestion = tooLarge ? 'Raise --max-pixels if the large images are wanted.' : 'Check the files listed by `tl data`.';
  if (good.length === 0) throw new DatasetError(`None of the ${scan.items.length} images in ${root} could be used: ${reasons(decodeSkipped)}.`, { suggestion });
  const have = new Set(good.flatMap(classesOf));
  const empty = scan.classes.filter((_, label) => !have.has(label));
  if (empty.length === 0) return;
  const labelsOf = new Map(scan.items.map((i) => [i.path, classesOf(i)]));
  const byClass = (name: string) => decodeSkipped.filter((s) => (labelsOf.get(s.path) ?? []).includes(scan.classes.indexOf(name)));
  throw new DatasetError(`Class ${empty.map((c) => `'${c}' (${reasons(byClass(c))})`).join(', ')} in ${root} ha${empty.length > 1 ? 've' : 's'} no image that decodes.`, { suggestion });
}

/** The classes of the dataset that have no image in a split. */
export function classesMissingFrom(dataset: Dataset, split: SplitName): string[] {
  const have = new Set(dataset.splits[split].flatMap(classesOf));
  return dataset.classes.filter((_, label) => !have.has(label));
}

/** Ratio of the largest to the smallest class in the training split above which --class-weight is suggested. */
const IMBALANCE = 10;

/**
 * What a user should know before training on the dataset: classes a split misses (so its metrics do not cover them),
 * heavy imbalance (unless the classes are weighted), and identical files that straddle splits.
 */
export function datasetWarnings(dataset: Dataset, asked: { val: number; test: number; classWeighted: boolean }): string[] {
  const out: string[] = [];
  if (dataset.splits.val.length > 0 || asked.val > 0) {
    for (const c of classesMissingFrom(dataset, 'val')) out.push(`class '${c}' has no validation images: validation loss, early stopping and the best epoch do not cover it`);
  }
  if (dataset.splits.test.length > 0 || asked.test > 0) {
    for (const c of classesMissingFrom(dataset, 'test')) out.push(`class '${c}' has no test images: the test metrics do not cover it`);
  }
  const counts = classCounts(dataset.splits.train, dataset.classes.length);
  dataset.classes.forEach((c, label) => {
    if (counts[label] === 0) out.push(`class '${c}' has no training images: the model cannot learn it`);
  });
  const most = Math.max(...counts);
  const least = Math.min(...counts);
  if (!asked.classWeighted && least > 0 && most / least >= IMBALANCE) {
    const name = (n: number) => dataset.classes[counts.indexOf(n)]!;
    out.push(`the classes are heavily imbalanced (${most} training images of '${name(most)}', ${least} of '${name(least)}'); --class-weight balanced weighs them evenly`);
  }
  // Identical files within a class: each one a split apart leaks a training image into validation or test.
  const splitOf = new Map(SPLITS.flatMap((s) => dataset.splits[s].map((i) => [i.rel, s] as const)));
  const straddle = dataset.duplicates.filter((group) => new Set(group.map((rel) => splitOf.get(rel))).size > 1);
  if (straddle.length > 0) out.push(`${straddle.length} group(s) of identical files fall into different splits, so the validation or test metrics include images the model trained on (e.g. ${straddle[0]!.join(' = ')}; tl data lists them)`);
  return out;
}

export interface DatasetSummary {
  root: string;
  layout: ScanResult['layout'];
  layoutNotes: string[];
  seed: number;
  /** Several labels per image: each class counts the images that have it, so the classes' counts add up to more than the images. */
  multiLabel: boolean;
  classes: { name: string; train: number; val: number; test: number; total: number }[];
  /** Multi-label: how many labels the images have. */
  labelsPerImage?: Stats;
  totals: Record<SplitName | 'all', number>;
  skipped: SkippedFile[];
  ignored: ScanResult['ignored'];
  /** Images under two classes (left out of the counts), identical files within a class, links out of the root. */
  conflicts: ScanResult['conflicts'];
  duplicates: ScanResult['duplicates'];
  outside: ScanResult['outside'];
  imageSize: { width: Stats; height: Stats } | null;
}

interface Stats {
  min: number;
  median: number;
  max: number;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0] ?? 0, median: sorted[Math.floor(sorted.length / 2)] ?? 0, max: sorted[sorted.length - 1] ?? 0 };
}

/** What `tl data` shows: counts per class and split, skipped files with reasons, image size statistics. */
export async function summarizeDataset(dataset: Dataset): Promise<DatasetSummary> {
  const all = SPLITS.flatMap((s) => dataset.splits[s]);
  const sizes = await mapLimit(all, 16, (item) => imageSize(item.path).catch((err: unknown) => ({ error: decodeFailureReason(err) })));
  const dims = sizes.filter((s): s is { width: number; height: number } => 'width' in s);
  const perSplit = Object.fromEntries(SPLITS.map((s) => [s, classCounts(dataset.splits[s], dataset.classes.length)])) as Record<SplitName, number[]>;
  return {
    root: dataset.root,
    layout: dataset.layout,
    layoutNotes: dataset.layoutNotes,
    seed: dataset.seed,
    multiLabel: dataset.labelSets !== null,
    classes: dataset.classes.map((name, label) => {
      const count = (s: SplitName) => perSplit[s][label]!;
      const row = { name, train: count('train'), val: count('val'), test: count('test') };
      return { ...row, total: row.train + row.val + row.test };
    }),
    ...(dataset.labelSets ? { labelsPerImage: stats(all.map((i) => i.labels!.length)) } : {}),
    totals: { train: dataset.splits.train.length, val: dataset.splits.val.length, test: dataset.splits.test.length, all: all.length },
    skipped: dataset.skipped,
    ignored: dataset.ignored,
    conflicts: dataset.conflicts,
    duplicates: dataset.duplicates,
    outside: dataset.outside,
    imageSize: dims.length ? { width: stats(dims.map((d) => d.width)), height: stats(dims.map((d) => d.height)) } : null,
  };
}
