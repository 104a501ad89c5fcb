// Labels from a CSV file (Kaggle's train.csv, fastai's from_csv, Keras's flow_from_dataframe): a header row, a column of
// image paths relative to the dataset folder, a column of labels and, optionally, a `split` column. Rows that cannot
// be used (an unknown or missing file, an empty label, a path outside the folder, a row repeated) are listed as skipped
// with their line, as the folder scan lists bad images; only a file that cannot be read as CSV, or lacks a column, is an
// error.
import { readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep as pathSep } from 'node:path';
import { parse } from 'csv-parse/sync';
import { DatasetError } from '../errors.js';
import { isInside } from '../util/paths.js';
import { notice } from '../util/notice.js';
import { checkFile, mapLimit, naturalCompare, splitFolder, type ImageItem, type LabelConflict, type MultiLabelSpec, type SkippedFile, type SplitName } from './scan.js';

/** Where the labels are: the CSV file and the names of its columns (found by their usual names when not given). */
export interface LabelsSpec {
  file: string;
  pathColumn?: string;
  labelColumn?: string;
}

/** Column names tried, in order, when none is given (compared in lower case). */
const PATH_NAMES = ['path', 'file', 'filename', 'file_name', 'fname', 'image', 'image_path', 'image_id', 'id'];
const LABEL_NAMES = ['label', 'labels', 'class', 'category', 'target', 'tags', 'y'];
const SPLIT_NAME = 'split';

/** The labelled rows of a CSV file, as the folder scan gives images. */
export interface CsvScan {
  classes: string[];
  items: ImageItem[];
  skipped: SkippedFile[];
  /** One path given two different labels (a single-label dataset cannot use it). */
  conflicts: LabelConflict[];
  /** What was read, in words (the columns used, the rows kept). */
  note: string;
  /** Real path and size of each item's file, for the duplicate check. */
  files: { item: ImageItem; real: string; size: number; cls: string }[];
}

function column(header: string[], given: string | undefined, usual: string[], what: string, flag: string, file: string): string {
  if (given !== undefined) {
    if (!header.includes(given)) throw new DatasetError(`${file} has no column '${given}' (${flag}); its columns: ${header.join(', ')}.`);
    return given;
  }
  const found = header.find((h) => usual.includes(h.toLowerCase()));
  if (found === undefined) throw new DatasetError(`${file} has no ${what} column: none of its columns (${header.join(', ')}) is named ${usual.map((u) => `'${u}'`).join(', ')}.`, { suggestion: `Name it with ${flag}, or add a header row if the file has none.` });
  return found;
}

/** Reads the CSV text into rows of strings keyed by the header; a malformed file is an error naming its line. */
function parseRows(text: string, file: string): { header: string[]; rows: { line: number; values: Record<string, string> }[] } {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    // The BOM Excel writes, CRLF line ends and quoted fields (with commas, quotes and line breaks inside) are read.
    records = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: false, info: true, trim: true }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (err) {
    const e = err as Error & { lines?: number };
    throw new DatasetError(`${file} is not a readable CSV file${e.lines ? ` (line ${e.lines})` : ''}: ${e.message.replace(/^Invalid (Record|Opening|Closing)/, (m) => m.toLowerCase()).split('\n')[0]}.`);
  }
  if (records.length === 0) throw new DatasetError(`${file} is empty; expected a header row and one row per image.`);
  const header = records[0]!.record;
  const seen = new Set<string>();
  for (const name of header) {
    if (name === '') throw new DatasetError(`${file}: its header row has an empty column name; a header row is required.`);
    if (seen.has(name)) throw new DatasetError(`${file}: its header names column '${name}' twice.`);
    seen.add(name);
  }
  const rows = records.slice(1).map(({ record, info }) => ({ line: info.lines, values: Object.fromEntries(header.map((h, i) => [h, record[i] ?? ''])) }));
  return { header, rows };
}

/** Separators of several labels in one cell, detected in this order when `--label-sep` is not given. */
const LABEL_SEPARATORS = [';', '|'];

/**
 * The separator of a multi-label file's cells: the one given, else the one of `;` and `|` its cells use (`;` when they
 * use neither: each image has one label). Cells using both are an error: which one separates is a guess.
 */
function labelSeparator(cells: string[], given: string | undefined, file: string): string {
  if (given !== undefined) return given;
  const used = LABEL_SEPARATORS.filter((sep) => cells.some((c) => c.includes(sep)));
  if (used.length > 1) throw new DatasetError(`${file}: its label cells use both ${used.map((u) => `'${u}'`).join(' and ')}; which one separates labels is unclear.`, { suggestion: 'Name it with --label-sep.' });
  return used[0] ?? LABEL_SEPARATORS[0]!;
}

/** The labels of `root`'s images from `spec.file` (several per cell, or per repeated row, with `multiLabel`). */
export async function scanCsv(root: string, spec: LabelsSpec, multiLabel?: MultiLabelSpec): Promise<CsvScan> {
  const file = spec.file;
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new DatasetError(`Cannot read --labels ${file}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}.`);
  });
  const { header, rows } = parseRows(text, file);
  const pathColumn = column(header, spec.pathColumn, PATH_NAMES, 'image path', '--path-column', file);
  const labelColumn = column(header, spec.labelColumn, LABEL_NAMES, 'label', '--label-column', file);
  const splitColumn = header.find((h) => h.toLowerCase() === SPLIT_NAME && h !== pathColumn && h !== labelColumn);
  const rootReal = await realpath(root);
  const cells = rows.map((r) => r.values[labelColumn]!);
  const sep = multiLabel ? labelSeparator(cells, multiLabel.sep, file) : null;
  if (!multiLabel) {
    const several = cells.filter((c) => LABEL_SEPARATORS.some((s) => c.includes(s)));
    if (several.length > 0) notice(`${several.length} label${several.length > 1 ? 's' : ''} in ${file} look${several.length > 1 ? '' : 's'} like several labels (e.g. '${several[0]}'): each is read as one class; pass --multi-label to read them as labels of one image`);
  }
  /** A cell's labels: itself, or (multi-label) its parts, trimmed, without empty ones or repeats. */
  const labelsIn = (cell: string): string[] => (sep === null ? (cell === '' ? [] : [cell]) : [...new Set(cell.split(sep).map((p) => p.trim()).filter((p) => p !== ''))]);
  const skipped: SkippedFile[] = [];
  const at = (line: number) => `${file} line ${line}`;
  // First pass: the row's own values; every path once (a repeat with the same label is skipped, with another one a conflict).
  const byRel = new Map<string, { line: number; label: string; labels: string[]; split: SplitName | undefined }>();
  const conflicting = new Map<string, LabelConflict>();
  for (const { line, values } of rows) {
    const given = values[pathColumn]!;
    const label = values[labelColumn]!;
    const rawSplit = splitColumn ? values[splitColumn]! : '';
    const shown = given === '' ? at(line) : join(root, given);
    if (given === '') {
      skipped.push({ path: at(line), reason: 'empty path' });
      continue;
    }
    if (isAbsolute(given) || given.split(/[\\/]/).includes('..')) {
      skipped.push({ path: shown, reason: `listed at ${at(line)}: a path outside the dataset folder` });
      continue;
    }
    const labels = labelsIn(label);
    if (labels.length === 0) {
      skipped.push({ path: shown, reason: `listed at ${at(line)} with an empty label` });
      continue;
    }
    const split = rawSplit === '' ? undefined : splitFolder(rawSplit) ?? undefined;
    if (rawSplit !== '' && split === undefined) {
      skipped.push({ path: shown, reason: `listed at ${at(line)} with split '${rawSplit}' (expected train, val or test)` });
      continue;
    }
    const rel = given.split(/[\\/]+/).filter((p) => p !== '' && p !== '.').join('/');
    const first = byRel.get(rel);
    if (first && sep !== null) {
      // Multi-label: a path on several rows (one row per label, as long-format files list them) has all their labels.
      const added = labels.filter((l) => !first.labels.includes(l));
      if (added.length === 0) skipped.push({ path: shown, reason: `listed again at ${at(line)} with no new label (first at line ${first.line})` });
      first.labels.push(...added);
      continue;
    }
    if (first) {
      if (first.label === label) skipped.push({ path: shown, reason: `listed again at ${at(line)} (first at line ${first.line})` });
      else {
        const c = conflicting.get(rel) ?? { files: [rel], classes: [first.label], why: 'same file' as const };
        if (!c.classes.includes(label)) c.classes.push(label);
        conflicting.set(rel, c);
      }
      continue;
    }
    byRel.set(rel, { line, label, labels, ...(split ? { split } : {}) } as { line: number; label: string; labels: string[]; split: SplitName | undefined });
  }
  for (const rel of conflicting.keys()) byRel.delete(rel);
  // Second pass: the files themselves, checked as the folder scan checks them (exists, inside the folder, an image).
  const entries = [...byRel.entries()];
  const checked = await mapLimit(entries, 16, async ([rel, row]) => {
    const path = join(root, ...rel.split('/'));
    const info = await stat(path).catch(() => null);
    if (info === null) return { skip: { path, reason: `listed at ${at(row.line)} but missing` } };
    if (!info.isFile()) return { skip: { path, reason: `listed at ${at(row.line)} but not a file` } };
    const real = await realpath(path);
    if (!isInside(rootReal, real)) return { skip: { path, reason: `listed at ${at(row.line)}: links outside the dataset folder` } };
    const state = { skipped: [] as SkippedFile[], ignored: { hidden: 0, nonImage: 0 } };
    const ok = await checkFile(path, state);
    if (!ok) return { skip: { path, reason: `listed at ${at(row.line)}: ${state.skipped[0]?.reason ?? 'not an image'}` } };
    return { path, real, ok };
  });
  const classes = [...new Set(entries.flatMap(([, row]) => row.labels))].sort(naturalCompare);
  const files: CsvScan['files'] = [];
  entries.forEach(([rel, row], i) => {
    const c = checked[i]!;
    if ('skip' in c) {
      skipped.push(c.skip!);
      return;
    }
    const labels = row.labels.map((l) => classes.indexOf(l)).sort((a, b) => a - b);
    const item: ImageItem = { path: c.path, rel: relative(root, c.path).split(pathSep).join('/'), label: sep === null ? labels[0]! : -1, ...(sep === null ? {} : { labels }), format: c.ok.format, ...(row.split ? { split: row.split } : {}) };
    files.push({ item, real: c.real, size: c.ok.size, cls: sep === null ? row.label : row.labels.join(sep) });
  });
  const note = `labels from ${file}: ${files.length} ${sep === null ? 'of' : 'images from'} ${rows.length} rows (path column '${pathColumn}', label column '${labelColumn}'${splitColumn ? `, split column '${splitColumn}'` : ''}${sep === null ? '' : `, several labels per image separated by '${sep}'`})`;
  return { classes, items: files.map((f) => f.item), skipped, conflicts: [...conflicting.values()], note, files };
}
