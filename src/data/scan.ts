// Scans a folder dataset: DATA/<class>/**/<image>, or pre-split DATA/<split>/<class>/**/<image> where a split folder
// is spelled as common datasets spell it (train/training, val/valid/validation, test/testing, any case).
import { lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { DatasetError } from '../errors.js';
import { IMAGE_EXTENSIONS, sniffFormat, type ImageFormat } from './magic.js';

export type SplitName = 'train' | 'val' | 'test';
export const SPLITS: readonly SplitName[] = ['train', 'val', 'test'];

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
  label: number;
  format: ImageFormat;
  /** Split given by a pre-split layout. */
  split?: SplitName;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface ScanResult {
  root: string;
  layout: 'class-folders' | 'pre-split';
  /** Pre-split layouts: which folder gave each split (a split without a folder is held out of train). */
  splitFolders: Partial<Record<SplitName, string[]>>;
  classes: string[];
  items: ImageItem[];
  skipped: SkippedFile[];
  ignored: { hidden: number; nonImage: number };
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
  seenDirs: Set<string>;
}

async function checkFile(path: string, state: WalkState): Promise<ImageFormat | null> {
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
  if (sniffed.format !== null) return sniffed.format;
  // Only files that claim to be images are worth a warning; other files are counted and ignored.
  if (looksLikeImage || sniffed.what.startsWith('BMP')) state.skipped.push({ path, reason: sniffed.what });
  else state.ignored.nonImage++;
  return null;
}

async function walk(dir: string, state: WalkState, out: string[]): Promise<void> {
  let real: string;
  try {
    real = await realpath(dir);
  } catch (err) {
    state.skipped.push({ path: dir, reason: (err as NodeJS.ErrnoException).code === 'ELOOP' ? 'symlink loop' : 'broken symlink' });
    return;
  }
  if (state.seenDirs.has(real)) {
    state.skipped.push({ path: dir, reason: 'symlink loop (folder already visited)' });
    return;
  }
  state.seenDirs.add(real);
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
    }
    if (isDir) await walk(path, state, out);
    else out.push(path);
  }
}

/** Scans `root`; throws DatasetError when there is nothing to train on. */
export async function scanDataset(root: string): Promise<ScanResult> {
  const rootInfo = await stat(root).catch(() => null);
  if (rootInfo === null) throw new DatasetError(`Dataset folder ${root} does not exist.`);
  if (!rootInfo.isDirectory()) throw new DatasetError(`Dataset path ${root} is not a folder; expected DATA/<class>/<image>.`);

  const top = await listDirs(root);
  const preSplit = top.length > 0 && top.every((d) => splitFolder(d) !== null) && top.some((d) => splitFolder(d) === 'train');
  const state: WalkState = { skipped: [], ignored: { hidden: 0, nonImage: 0 }, seenDirs: new Set() };
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
  if (classes.length === 0) throw new DatasetError(`No class folders in ${root}; expected DATA/<class>/<image>.`);

  const items: ImageItem[] = [];
  const counts = new Map<string, number>();
  for (const { split, cls, dir } of classDirs) {
    const files: string[] = [];
    await walk(dir, state, files);
    const label = classes.indexOf(cls);
    const formats = await mapLimit(files, 16, (f) => checkFile(f, state));
    files.forEach((path, i) => {
      const format = formats[i];
      if (!format) return;
      items.push({ path, rel: relative(root, path).split(sep).join('/'), label, format, ...(split ? { split } : {}) });
      counts.set(cls, (counts.get(cls) ?? 0) + 1);
    });
  }
  const empty = classes.filter((c) => !counts.get(c));
  if (items.length === 0) throw new DatasetError(`No images found in ${root} (${state.skipped.length} files skipped).`);
  if (empty.length > 0) throw new DatasetError(`Class folder${empty.length > 1 ? 's' : ''} ${empty.map((c) => `'${c}'`).join(', ')} in ${root} contain${empty.length > 1 ? '' : 's'} no usable images.`, { suggestion: 'Remove the empty folder or add images to it.' });
  if (classes.length < 2) throw new DatasetError(`Only one class ('${classes[0]}') in ${root}; a classifier needs at least two class folders.`);
  return { root, layout: preSplit ? 'pre-split' : 'class-folders', splitFolders, classes, items, skipped: state.skipped, ignored: state.ignored };
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
  const state: WalkState = { skipped: [], ignored: { hidden: 0, nonImage: 0 }, seenDirs: new Set() };
  const files: string[] = [];
  for (const p of paths) {
    const info = await stat(p).catch(() => null);
    if (info === null) state.skipped.push({ path: p, reason: 'does not exist' });
    else if (info.isDirectory()) await walk(p, state, files);
    else files.push(p);
  }
  const formats = await mapLimit(files, 16, (f) => checkFile(f, state));
  const items: ImageItem[] = [];
  files.forEach((path, i) => {
    const format = formats[i];
    if (format) items.push({ path, rel: path.split(sep).join('/'), label: -1, format });
  });
  return { items, skipped: state.skipped };
}
