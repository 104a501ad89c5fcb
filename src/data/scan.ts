// Scans a folder dataset: DATA/<class>/**/<image>, or pre-split DATA/<split>/<class>/**/<image> where a split folder
// is spelled as common datasets spell it (train/training, val/valid/validation, test/testing, any case).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { DatasetError } from '../errors.js';
import { notice } from '../util/notice.js';
import { isInside } from '../util/paths.js';
import { IMAGE_EXTENSIONS, sniffFormat, type ImageFormat } from './magic.js';
import { scanCsv, type LabelsSpec } from './csv.js';
import type { AugmentLevel } from './modes.js';

export const SPLITS = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

/** Folder names read as a split (compared in lower case): Keras, Kaggle, Roboflow and torchvision spellings. */
const SPLIT_FOLDERS: Record<string, SplitName> = { train: 'train', training: 'train', val: 'val', valid: 'val', validation: 'val', test: 'test', testing: 'test' };

/** The split a top-level folder name stands for, or null. */
export function splitFolder(name: string): SplitName | null {
  return SPLIT_FOLDERS[name.toLowerCase()] ?? null;
}

export interface ImageItem {
  path: string;
  /** Path relative to the dataset root, with forward slashes (stable across machines). */
  rel: string;
  /**
   * Single-label: the class (an index into the classes). Multi-label: the index of the item's set of labels in the
   * scan's `labelSets`, what the training step turns into a target row; `labels` holds the classes themselves.
   */
  label: number;
  /** Multi-label: the item's classes, ascending (at least one). Absent for a single-label dataset. */
  labels?: number[];
  format: ImageFormat;
  /** Split given by a pre-split layout. */
  split?: SplitName;
  /**
   * One of the augmented views of a training image (`--augment-views`): drawn at `level` with `seed` whatever the
   * epoch, so that its frozen-part outputs can be cached like an image's.
   */
  view?: { index: number; level: Exclude<AugmentLevel, 'none'>; seed: number };
}

/** The classes of an item: its one class, or (multi-label) its labels. */
export function classesOf(item: ImageItem): number[] {
  return item.labels ?? [item.label];
}

/** How a multi-label dataset is read: the separator of several labels in one CSV cell (detected when not given). */
export interface MultiLabelSpec {
  sep?: string;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

/** One image under two or more classes: the same file reached through links, or files with identical bytes. */
export interface LabelConflict {
  /** Paths relative to the dataset root. */
  files: string[];
  classes: string[];
  why: 'same file' | 'identical content';
}

/** A folder link that leads out of the dataset root, and how many images it brings in. */
export interface OutsideLink {
  link: string;
  target: string;
  images: number;
}

export interface ScanResult {
  root: string;
  layout: 'class-folders' | 'pre-split' | 'csv';
  /** A CSV layout: where the labels came from, in words. */
  labelsNote?: string;
  /** Pre-split layouts: which folder gave each split (a split without a folder is held out of train). */
  splitFolders: Partial<Record<SplitName, string[]>>;
  classes: string[];
  items: ImageItem[];
  skipped: SkippedFile[];
  ignored: { hidden: number; nonImage: number };
  /** Images under two classes (a single-label dataset cannot train on them: `scanDataset` refuses unless allowed). */
  conflicts: LabelConflict[];
  /** Files with identical bytes within one class (each kept; they may fall into different splits). */
  duplicates: string[][];
  /** Folder links out of the root, with the images they bring in. */
  outside: OutsideLink[];
  /** Multi-label: each distinct set of classes (ascending), indexed by the items' `label`; null for single-label. */
  labelSets: number[][] | null;
}

/** Natural sort: `class2` before `class10`. */
export const naturalCompare = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' }).compare;

async function listDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory()) out.push(e.name);
    else if (e.isSymbolicLink()) {
      try {
        if ((await stat(join(dir, e.name))).isDirectory()) out.push(e.name);
      } catch {
        // broken link at class level: reported when files are walked
      }
    }
  }
  return out.sort(naturalCompare);
}

interface WalkState {
  skipped: SkippedFile[];
  ignored: { hidden: number; nonImage: number };
  /** The dataset root's real path (links out of it are counted). */
  rootReal: string | null;
  outside: OutsideLink[];
}

/** A file found by the walk: its path as reached, and its real path (links resolved). */
interface Found {
  path: string;
  real: string;
}

/** Whether `path` is an image file tl can read (what it is, by its first bytes), with its size; why not goes into `state`. */
export async function checkFile(path: string, state: Pick<WalkState, 'skipped' | 'ignored'>): Promise<{ format: ImageFormat; size: number } | null> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const link = await lstat(path).catch(() => null);
    if (link?.isSymbolicLink()) {
      state.skipped.push({ path, reason: code === 'ELOOP' ? 'symlink loop' : 'broken symlink (target does not exist)' });
    } else {
      state.skipped.push({ path, reason: `cannot stat (${code ?? 'error'})` });
    }
    return null;
  }
  const looksLikeImage = IMAGE_EXTENSIONS.has(extname(path).toLowerCase());
  if (!info.isFile()) {
    // Reading a named pipe or a device would block or never end: listed when named like an image, counted otherwise.
    const kind = info.isFIFO() ? 'a named pipe' : info.isSocket() ? 'a socket' : info.isCharacterDevice() || info.isBlockDevice() ? 'a device' : 'not a file';
    if (looksLikeImage) state.skipped.push({ path, reason: `not a regular file (${kind})` });
    else state.ignored.nonImage++;
    return null;
  }
  if (info.size === 0) {
    if (looksLikeImage) state.skipped.push({ path, reason: 'empty file (0 bytes)' });
    else state.ignored.nonImage++;
    return null;
  }
  let head: Uint8Array;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(16);
      const { bytesRead } = await fh.read(buf, 0, 16, 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    state.skipped.push({ path, reason: code === 'EACCES' || code === 'EPERM' ? 'unreadable (permission denied)' : `unreadable (${code ?? 'error'})` });
    return null;
  }
  const sniffed = sniffFormat(head);
  if (sniffed.format !== null) return { format: sniffed.format, size: info.size };
  // Only files that claim to be images are worth a warning; other files are counted and ignored.
  if (looksLikeImage || sniffed.what.startsWith('BMP')) state.skipped.push({ path, reason: sniffed.what });
  else state.ignored.nonImage++;
  return null;
}

/**
 * Walks `dir` depth-first. Folder links are followed unless they lead back into a folder on the way down (a loop:
 * skipped and listed); links out of the dataset root are followed and counted in `state.outside`.
 */
async function walk(dir: string, state: WalkState, out: Found[], chain: string[] = []): Promise<void> {
  let real: string;
  try {
    real = await realpath(dir);
  } catch (err) {
    state.skipped.push({ path: dir, reason: (err as NodeJS.ErrnoException).code === 'ELOOP' ? 'symlink loop' : 'broken symlink' });
    return;
  }
  const parent = chain.at(-1);
  if (chain.includes(real) || (parent !== undefined && isInside(real, parent))) {
    state.skipped.push({ path: dir, reason: `symlink loop (it leads to ${real}, a folder that contains it)` });
    return;
  }
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    state.skipped.push({ path: dir, reason: `unreadable folder (${(err as NodeJS.ErrnoException).code ?? 'error'})` });
    return;
  }
  entries.sort((a, b) => naturalCompare(a.name, b.name));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.name.startsWith('.')) {
      state.ignored.hidden++;
      continue;
    }
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) {
      isDir = await stat(path).then((s) => s.isDirectory()).catch(() => false);
      if (isDir && state.rootReal !== null && isInside(state.rootReal, real)) {
        const target = await realpath(path).catch(() => null);
        if (target !== null && !isInside(state.rootReal, target)) {
          const before = out.length;
          await walk(path, state, out, [...chain, real]);
          state.outside.push({ link: path, target, images: out.length - before });
          continue;
        }
      }
    }
    if (isDir) await walk(path, state, out, [...chain, real]);
    else out.push({ path, real: e.isSymbolicLink() ? await realpath(path).catch(() => path) : join(real, e.name) });
  }
}

/** sha256 of a file's bytes, streamed. */
async function fileHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Images under two classes: the dataset is a dataset, but not one a single-label classifier can learn from. */
export class LabelConflictError extends DatasetError {}

/** The conflicts listed in one line (the first few, then how many more). */
export function describeConflicts(conflicts: readonly LabelConflict[], root: string): string {
  const files = (c: LabelConflict) => (c.files.length <= 4 ? c.files.join(' = ') : `${c.files.slice(0, 3).join(' = ')} = ... (${c.files.length} files)`);
  const shown = conflicts.slice(0, 4).map((c) => `${files(c)} (${c.why})`);
  const more = conflicts.length > shown.length ? `, and ${conflicts.length - shown.length} more (tl data ${root} lists them all)` : '';
  return `${conflicts.length} image${conflicts.length > 1 ? 's are' : ' is'} under two classes in ${root}: ${shown.join('; ')}${more}`;
}

/**
 * Scans `root`; throws DatasetError when there is nothing to train on, and (unless `allowConflicts`) when an image is
 * under two classes. Which class an image is under is decided from real paths and bytes, never from visit order.
 */
export async function scanDataset(root: string, options: { allowConflicts?: boolean; labels?: LabelsSpec; multiLabel?: MultiLabelSpec } = {}): Promise<ScanResult> {
  const rootInfo = await stat(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ELOOP') throw new DatasetError(`Dataset path ${root} is a symlink loop.`);
    if (err.code === 'EACCES') throw new DatasetError(`Dataset folder ${root} cannot be read (permission denied).`);
    return null;
  });
  if (rootInfo === null) throw new DatasetError(`Dataset folder ${root} does not exist.`);
  if (!rootInfo.isDirectory()) throw new DatasetError(`Dataset path ${root} is not a folder; expected DATA/<class>/<image>.`);

  if (options.labels) return scanLabelled(root, options.labels, options);
  const top = await listDirs(root);
  const preSplit = top.length > 0 && top.every((d) => splitFolder(d) !== null) && top.some((d) => splitFolder(d) === 'train');
  const state: WalkState = { skipped: [], ignored: { hidden: 0, nonImage: 0 }, rootReal: await realpath(root), outside: [] };
  const classDirs: { split?: SplitName; cls: string; dir: string }[] = [];
  const splitFolders: Partial<Record<SplitName, string[]>> = {};
  if (preSplit) {
    for (const folder of top) {
      const split = splitFolder(folder)!;
      (splitFolders[split] ??= []).push(folder);
      for (const cls of await listDirs(join(root, folder))) classDirs.push({ split, cls, dir: join(root, folder, cls) });
    }
  } else {
    for (const cls of top) classDirs.push({ cls, dir: join(root, cls) });
  }
  const classes = [...new Set(classDirs.map((c) => c.cls))].sort(naturalCompare);
  if (classes.length === 0) throw new DatasetError(`No class folders in ${root}; expected DATA/<class>/<image>.`, await csvHint(root));

  const found: { item: ImageItem; real: string; size: number; cls: string }[] = [];
  const byReal = new Map<string, { item: ImageItem; cls: string }>();
  const sameFile = new Map<string, LabelConflict>();
  for (const { split, cls, dir } of classDirs) {
    const files: Found[] = [];
    await walk(dir, state, files, [state.rootReal!]);
    const label = classes.indexOf(cls);
    const checked = await mapLimit(files, 16, (f) => checkFile(f.path, state));
    files.forEach((file, i) => {
      const ok = checked[i];
      if (!ok) return;
      const item: ImageItem = { path: file.path, rel: relative(root, file.path).split(sep).join('/'), label, format: ok.format, ...(split ? { split } : {}) };
      const first = byReal.get(file.real);
      if (first && first.cls === cls) {
        // The same file twice in one class (a link to a folder of the class): counted once.
        state.skipped.push({ path: file.path, reason: `the same file as ${first.item.rel} (reached through a symlink)` });
        return;
      }
      if (first) {
        const conflict = sameFile.get(file.real) ?? { files: [first.item.rel], classes: [first.cls], why: 'same file' as const };
        conflict.files.push(item.rel);
        if (!conflict.classes.includes(cls)) conflict.classes.push(cls);
        sameFile.set(file.real, conflict);
        return;
      }
      byReal.set(file.real, { item, cls });
      found.push({ item, real: file.real, size: ok.size, cls });
    });
  }
  const { conflicts, duplicates, conflicted } = await sameContent(found, [...sameFile.values()], new Set<string>([...sameFile.keys()]));
  for (const o of state.outside) notice(`${o.link} links outside the dataset (to ${o.target}): its ${o.images} image${o.images === 1 ? '' : 's'} are counted under its class`);
  if (options.multiLabel) {
    const items = mergeLabels(found, conflicts, classes, state.skipped);
    requireClasses(root, classes, items, state.skipped.length, root);
    return { root, layout: preSplit ? 'pre-split' : 'class-folders', splitFolders, classes, items, skipped: state.skipped, ignored: state.ignored, conflicts: [], duplicates, outside: state.outside, labelSets: assignLabelSets(items) };
  }
  if (conflicts.length > 0 && !options.allowConflicts) {
    throw new LabelConflictError(`${describeConflicts(conflicts, root)}; a single-label classifier needs each image in one class.`, { suggestion: `Remove the copies from all but one class folder (tl data ${root} lists them).` });
  }
  // Images under two classes are left out (only `tl data` gets this far with them): which label would be a guess.
  const items = found.filter((f) => !conflicted.has(f.real)).map((f) => f.item);
  const counts = new Map<string, number>();
  for (const item of items) counts.set(classes[item.label]!, (counts.get(classes[item.label]!) ?? 0) + 1);
  const empty = classes.filter((c) => !counts.get(c));
  if (items.length === 0) throw new DatasetError(`No images found in ${root} (${state.skipped.length} files skipped).`);
  if (empty.length > 0) throw new DatasetError(`Class folder${empty.length > 1 ? 's' : ''} ${empty.map((c) => `'${c}'`).join(', ')} in ${root} contain${empty.length > 1 ? '' : 's'} no usable images.`, { suggestion: 'Remove the empty folder or add images to it.' });
  if (classes.length < 2) throw new DatasetError(`Only one class ('${classes[0]}') in ${root}; a classifier needs at least two class folders.`, await csvHint(root));
  return { root, layout: preSplit ? 'pre-split' : 'class-folders', splitFolders, classes, items, skipped: state.skipped, ignored: state.ignored, conflicts, duplicates, outside: state.outside, labelSets: null };
}

/**
 * Multi-label: an image under several classes (the same file, or files with identical bytes) is one item with all
 * their labels, kept at its first path; its other copies are listed as skipped, saying whose labels they add to.
 */
function mergeLabels(found: readonly Kept[], conflicts: readonly LabelConflict[], classes: readonly string[], skipped: SkippedFile[]): ImageItem[] {
  const byRel = new Map(found.map((f) => [f.item.rel, f]));
  const labels = new Map(found.map((f) => [f.item.rel, new Set(f.item.labels ?? [classes.indexOf(f.cls)])]));
  const dropped = new Set<string>();
  for (const c of conflicts) {
    const keep = c.files[0]!;
    const into = labels.get(keep)!;
    for (const cls of c.classes) if (classes.includes(cls)) into.add(classes.indexOf(cls));
    for (const rel of c.files.slice(1)) {
      for (const label of labels.get(rel) ?? []) into.add(label);
      const copy = byRel.get(rel);
      if (copy) dropped.add(rel);
      skipped.push({ path: copy?.item.path ?? rel, reason: `${c.why === 'same file' ? 'the same file as' : 'identical to'} ${keep}, which takes its labels` });
    }
  }
  return found.filter((f) => !dropped.has(f.item.rel)).map((f) => ({ ...f.item, labels: [...labels.get(f.item.rel)!].sort((a, b) => a - b) }));
}

/** Numbers each distinct set of labels (in order of first appearance) and sets each item's `label` to its set's number. */
export function assignLabelSets(items: ImageItem[]): number[][] {
  const sets: number[][] = [];
  const index = new Map<string, number>();
  for (const item of items) {
    const key = item.labels!.join(',');
    let id = index.get(key);
    if (id === undefined) {
      id = sets.length;
      sets.push(item.labels!);
      index.set(key, id);
    }
    item.label = id;
  }
  return sets;
}

/** A file kept by a scan: the item, its real path and size, and its class's name. */
interface Kept {
  item: ImageItem;
  real: string;
  size: number;
  cls: string;
}

/**
 * Files with identical bytes (only those whose size another shares are read and hashed): under one class they are
 * duplicates (kept); under several, a conflict like the same file under two classes (left out).
 */
async function sameContent(found: readonly Kept[], conflicts: LabelConflict[], conflicted: Set<string>): Promise<{ conflicts: LabelConflict[]; duplicates: string[][]; conflicted: Set<string> }> {
  const bySize = new Map<number, Kept[]>();
  for (const f of found) {
    const group = bySize.get(f.size);
    if (group) group.push(f);
    else bySize.set(f.size, [f]);
  }
  const byHash = new Map<string, Kept[]>();
  for (const group of bySize.values()) {
    if (group.length < 2) continue;
    const hashes = await mapLimit(group, 8, (f) => fileHash(f.real));
    group.forEach((f, i) => {
      const same = byHash.get(hashes[i]!);
      if (same) same.push(f);
      else byHash.set(hashes[i]!, [f]);
    });
  }
  const duplicates: string[][] = [];
  for (const group of byHash.values()) {
    if (group.length < 2) continue;
    const groupClasses = [...new Set(group.map((f) => f.cls))];
    if (groupClasses.length > 1) {
      conflicts.push({ files: group.map((f) => f.item.rel), classes: groupClasses, why: 'identical content' });
      for (const f of group) conflicted.add(f.real);
    } else duplicates.push(group.map((f) => f.item.rel));
  }
  return { conflicts, duplicates, conflicted };
}

/** What a labelled dataset must have to train a classifier: images, every class used, two classes at least. */
function requireClasses(root: string, classes: string[], items: ImageItem[], skipped: number, where: string): void {
  const counts = new Map<string, number>();
  for (const item of items) for (const label of classesOf(item)) counts.set(classes[label]!, (counts.get(classes[label]!) ?? 0) + 1);
  const empty = classes.filter((c) => !counts.get(c));
  if (items.length === 0) throw new DatasetError(`No images found in ${root} (${skipped} files skipped).`);
  if (empty.length > 0) throw new DatasetError(`Class${empty.length > 1 ? 'es' : ''} ${empty.map((c) => `'${c}'`).join(', ')} in ${where} ha${empty.length > 1 ? 've' : 's'} no usable images.`, { suggestion: 'Remove the class or add images to it.' });
  if (classes.length < 2) throw new DatasetError(`Only one class ('${classes[0]}') in ${where}; a classifier needs at least two classes.`);
}

/** Where DATA holds a CSV file but no class folders were found: how to read the labels from it. */
async function csvHint(root: string): Promise<{ suggestion: string } | undefined> {
  const csv = (await readdir(root).catch(() => [] as string[])).filter((n) => n.toLowerCase().endsWith('.csv')).sort();
  if (csv.length === 0) return undefined;
  return { suggestion: `Labels in a CSV file are read only when asked: pass --labels ${join(root, csv[0]!)} (a header row, a path column and a label column).` };
}

/** A dataset whose labels come from a CSV file (`--labels`): its rows, checked as the folder scan checks files. */
async function scanLabelled(root: string, labels: LabelsSpec, options: { allowConflicts?: boolean; multiLabel?: MultiLabelSpec }): Promise<ScanResult> {
  const csv = await scanCsv(root, labels, options.multiLabel);
  const sameFile = new Set(csv.conflicts.flatMap((c) => c.files));
  const { conflicts, duplicates, conflicted } = await sameContent(csv.files, csv.conflicts, new Set());
  const classes = csv.classes;
  const base = { root, layout: 'csv' as const, labelsNote: csv.note, splitFolders: {}, classes, skipped: csv.skipped, ignored: { hidden: 0, nonImage: 0 }, duplicates, outside: [] };
  if (options.multiLabel) {
    // Rows of one path were joined by scanCsv; files with identical bytes join here.
    const items = mergeLabels(csv.files, conflicts, classes, csv.skipped);
    requireClasses(root, classes, items, csv.skipped.length, labels.file);
    return { ...base, items, conflicts: [], labelSets: assignLabelSets(items) };
  }
  if (conflicts.length > 0 && !options.allowConflicts) {
    throw new LabelConflictError(`${describeConflicts(conflicts, root)}; a single-label classifier needs each image under one label.`, { suggestion: `Give each image one label in ${labels.file}, or pass --multi-label (tl data ${root} --labels ${labels.file} lists them).` });
  }
  const items = csv.items.filter((i) => !conflicted.has(csv.files.find((f) => f.item === i)!.real) && !sameFile.has(i.rel));
  requireClasses(root, classes, items, csv.skipped.length, labels.file);
  return { ...base, items, conflicts, labelSets: null };
}

/** Maps with at most `limit` calls in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}

/** Image files named directly or found under folders (recursively), in order, without classes (label -1). */
export async function listImages(paths: readonly string[]): Promise<{ items: ImageItem[]; skipped: SkippedFile[] }> {
  const state: WalkState = { skipped: [], ignored: { hidden: 0, nonImage: 0 }, rootReal: null, outside: [] };
  const files: Found[] = [];
  for (const p of paths) {
    const info = await stat(p).catch(() => null);
    if (info === null) state.skipped.push({ path: p, reason: 'does not exist' });
    else if (info.isDirectory()) await walk(p, state, files);
    else files.push({ path: p, real: p });
  }
  const checked = await mapLimit(files, 16, (f) => checkFile(f.path, state));
  const items: ImageItem[] = [];
  files.forEach((file, i) => {
    const ok = checked[i];
    if (ok) items.push({ path: file.path, rel: file.path.split(sep).join('/'), label: -1, format: ok.format });
  });
  return { items, skipped: state.skipped };
}
