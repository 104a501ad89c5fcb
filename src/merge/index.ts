// `tl merge`: joins the shards of a sharded pass (tl extract, tl cache, tl predict) into exactly what one machine writes (same bytes, same row order),
// after checking that they belong together: every manifest valid, the same command, shard count and key (model,
// weights, layer, preprocessing, split, dataset), every shard present once, every output file its manifest's.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DatasetError, UsageError } from '../errors.js';
import { checkOutputPath } from '../util/atomic.js';
import { npyHeader, npyRow, readNpy, type NpyArray } from '../util/npy.js';
import { boundaryFile, CACHE_FILE, type CacheRecord } from '../frozen/folder.js';
import { sweepStaleTemps, writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { mkdir, rm } from 'node:fs/promises';
import { readJsonFile } from '../util/json-file.js';
import { notice } from '../util/notice.js';
import { isInside, realish } from '../util/paths.js';
import { TL_VERSION } from '../version.js';
import { computeMetrics, type Metrics } from '../metrics/classification.js';
import { MANIFEST, manifestSchema, type Manifest } from '../shard/index.js';

export interface MergeResult {
  command: Manifest['command'];
  shards: number;
  rows: number;
  files: string[];
  skipped: Manifest['skipped'];
  /** For tl eval shards: what `tl eval` returns, its metrics computed over every shard's images. */
  eval?: { run: string; model: string; data: string; split: string; usedRunSplit: boolean; classes: string[]; metrics: Metrics };
}

const SHARD_DIR = /^shard-(\d+)-of-(\d+)$/;

/** Shard folders named by the arguments: a shard folder itself, or a folder holding shard-*-of-* folders. */
async function shardFolders(inputs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const input of inputs) {
    const info = await stat(input).catch(() => null);
    if (!info?.isDirectory()) throw new UsageError(`${input} is not a folder of shards.`);
    if (SHARD_DIR.test(input.replace(/\/+$/, '').split('/').pop() ?? '')) {
      out.push(input);
      continue;
    }
    const inside = (await readdir(input)).filter((n) => SHARD_DIR.test(n)).sort();
    if (inside.length === 0) throw new UsageError(`${input} holds no shard-I-of-N folder.`);
    out.push(...inside.map((n) => join(input, n)));
  }
  return out;
}

async function readManifest(folder: string): Promise<Manifest | null> {
  const path = join(folder, MANIFEST);
  return readJsonFile(path, manifestSchema, (fault) => new DatasetError(fault.kind === 'syntax' ? `${path} is not valid JSON (a damaged shard: re-run it).` : `${path} is not a tl shard manifest (${fault.issue}).`));
}

/** Checks the shards belong together and are complete; returns them by index with their folders. */
async function checkShards(inputs: string[]): Promise<{ folder: string; manifest: Manifest }[]> {
  const folders = await shardFolders(inputs);
  const found: { folder: string; manifest: Manifest }[] = [];
  const incomplete: string[] = [];
  for (const folder of folders) {
    const manifest = await readManifest(folder);
    if (manifest === null) incomplete.push(folder);
    else found.push({ folder, manifest });
  }
  if (found.length === 0) throw new UsageError(`No complete shard in ${inputs.join(', ')} (no ${MANIFEST} in ${folders.join(', ')}).`);
  const first = found[0]!.manifest;
  for (const { folder, manifest } of found) {
    if (manifest.command !== first.command) throw new UsageError(`${folder} is a shard of tl ${manifest.command}, ${found[0]!.folder} of tl ${first.command}: they cannot be merged.`);
    if (manifest.shard.count !== first.shard.count) throw new UsageError(`${folder} is one of ${manifest.shard.count} shards, ${found[0]!.folder} one of ${first.shard.count}: the shards come from different runs.`);
    if (manifest.tlVersion !== first.tlVersion) throw new UsageError(`${folder} was written by tl ${manifest.tlVersion}, ${found[0]!.folder} by tl ${first.tlVersion}: re-run the shards with one version.`);
    for (const k of new Set([...Object.keys(first.key), ...Object.keys(manifest.key)])) {
      if (manifest.key[k] !== first.key[k]) throw new UsageError(`${folder} and ${found[0]!.folder} disagree on ${k} (${String(manifest.key[k])} vs ${String(first.key[k])}): the shards come from different runs.`);
    }
  }
  const count = first.shard.count;
  const byIndex = new Map<number, { folder: string; manifest: Manifest }>();
  for (const f of found) {
    const other = byIndex.get(f.manifest.shard.index);
    if (other && JSON.stringify(other.manifest.outputs) !== JSON.stringify(f.manifest.outputs)) throw new UsageError(`Shard ${f.manifest.shard.index} appears twice with different outputs (${other.folder}, ${f.folder}).`);
    byIndex.set(f.manifest.shard.index, f);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    throw new UsageError(`Shards ${missing.join(', ')} of ${count} are missing or incomplete${incomplete.length ? ` (no ${MANIFEST} in ${incomplete.join(', ')})` : ''}: re-run them (tl ${first.command} ... --shard I/${count}) and merge again.`);
  }
  // What tl reads back is verified before it is trusted: each output file is the one its manifest names.
  for (const { folder, manifest } of byIndex.values()) {
    for (const o of manifest.outputs) {
      if (o.name.includes('/') || o.name.startsWith('.')) throw new DatasetError(`${join(folder, MANIFEST)} names an output outside its folder (${o.name}).`);
      const bytes = await readFile(join(folder, o.name)).catch(() => null);
      if (bytes === null) throw new DatasetError(`${join(folder, o.name)} is missing: re-run shard ${manifest.shard.index}.`);
      if (createHash('sha256').update(bytes).digest('hex') !== o.sha256) throw new DatasetError(`${join(folder, o.name)} does not match its manifest (changed or damaged): re-run shard ${manifest.shard.index}.`);
    }
  }
  return Array.from({ length: count }, (_, i) => byIndex.get(i)!);
}

interface Row {
  position: number;
  /** The row's bytes in each output (npy: the floats; text formats: the line without its row number). */
  parts: Buffer[];
}

/** Splits a text file into lines (without the final newline). */
const lines = (b: Buffer) => b.toString('utf8').replace(/\n$/, '').split('\n');

/**
 * Joins the shards of `tl extract` into `out` (and, for .npy, its index beside it): the rows in the order one
 * machine writes them (the dataset's scan order), byte for byte.
 */
export async function mergeShards(inputs: string[], out: string): Promise<MergeResult> {
  // The merged output never replaces what it is made from: it may go beside the shards (tl slurm puts it there), not
  // into one of them, nor be an input itself.
  const target = realish(out);
  for (const input of inputs) {
    if (realish(input) === target) throw new UsageError(`--out ${out} is the input ${input} itself.`, { suggestion: 'Choose an --out beside or outside the shard folders.' });
  }
  for (const folder of await shardFolders(inputs)) {
    if (isInside(realish(folder), target)) throw new UsageError(`--out ${out} is inside the shard ${folder}: the merge would write over the shards it reads.`, { suggestion: 'Choose an --out beside or outside the shard folders.' });
  }
  const shards = await checkShards(inputs);
  const first = shards[0]!.manifest;
  if (first.command === 'cache') return mergeCache(shards, out);
  if (first.command === 'eval') return mergeEval(shards, out);
  await checkOutputPath(out);
  if (first.command === 'predict') {
    // One JSON line per image, in the order one machine lists the inputs.
    const rows: { position: number; text: string }[] = [];
    for (const { folder, manifest } of shards) {
      const text = (await readFile(join(folder, 'predictions.jsonl'), 'utf8')).split('\n').filter((l) => l !== '');
      if (text.length !== manifest.files.length) throw new DatasetError(`${join(folder, 'predictions.jsonl')} holds ${text.length} lines; its manifest lists ${manifest.files.length}.`);
      manifest.files.forEach((f, r) => rows.push({ position: f.position, text: text[r]! }));
    }
    rows.sort((a, b) => a.position - b.position);
    await writeFileAtomic(out, rows.map((r) => `${r.text}\n`).join(''));
    return { command: 'predict', shards: shards.length, rows: rows.length, files: [out], skipped: shards.flatMap((s) => s.manifest.skipped) };
  }
  const format = String(first.key['format']);
  const rows: Row[] = [];
  let rowShape: number[] | null = null;
  let header: string | null = null;
  for (const { folder, manifest } of shards) {
    const positions = manifest.files.map((f) => f.position);
    if (format === 'npy') {
      const path = join(folder, 'features.npy');
      // Header, byte length and the manifest's rows must agree; every shard's rows have the first shard's shape.
      const npy = readNpy(await readFile(path), path, { rows: positions.length, ...(rowShape ? { rowShape } : {}) });
      rowShape ??= npy.shape.slice(1);
      const indexPath = join(folder, 'features.index.csv');
      const index = lines(await readFile(indexPath));
      if (index.length - 1 !== positions.length) throw new DatasetError(`${indexPath} holds ${index.length - 1} rows; its manifest lists ${positions.length}.`);
      header ??= index[0]!;
      positions.forEach((position, r) => rows.push({ position, parts: [npyRow(npy, r), Buffer.from(index[r + 1]!.slice(index[r + 1]!.indexOf(',') + 1))] }));
    } else {
      const text = lines(await readFile(join(folder, `features.${format}`)));
      if (format === 'csv') {
        const own = text.shift()!;
        header ??= own;
      }
      else if (text.length === 1 && text[0] === '') text.length = 0;
      if (format === 'csv' && header !== null && text.length !== positions.length) throw new DatasetError(`${join(folder, 'features.csv')} holds ${text.length} rows; its manifest lists ${positions.length}.`);
      positions.forEach((position, r) => rows.push({ position, parts: [Buffer.from(text[r]!)] }));
    }
  }
  rows.sort((a, b) => a.position - b.position);
  const files: string[] = [];
  if (format === 'npy') {
    const index = out.replace(/\.npy$/i, '') + '.index.csv';
    await writeFileAtomic(out, Buffer.concat([npyHeader([rows.length, ...rowShape!]), ...rows.map((r) => r.parts[0]!)]));
    await writeFileAtomic(index, `${header}\n${rows.map((r, i) => `${i},${r.parts[1]!.toString('utf8')}\n`).join('')}`);
    files.push(out, index);
  } else {
    await writeFileAtomic(out, `${header !== null ? `${header}\n` : ''}${rows.map((r) => `${r.parts[0]!.toString('utf8')}\n`).join('')}`);
    files.push(out);
  }
  return { command: first.command, shards: shards.length, rows: rows.length, files, skipped: shards.flatMap((s) => s.manifest.skipped) };
}

/**
 * Joins the shards of `tl cache` into the folder one machine writes: each boundary tensor's .npy with the rows in
 * the single-machine order (by path relative to the dataset root), and cache.json.
 */
async function mergeCache(shards: { folder: string; manifest: Manifest }[], out: string): Promise<MergeResult> {
  const first = shards[0]!.manifest;
  const shapes = JSON.parse(String(first.key['boundaryShapes'])) as number[][];
  const layers = JSON.parse(String(first.key['boundaryLayers'])) as string[];
  const rows: { position: number; file: Manifest['files'][number]; parts: Buffer[] }[] = [];
  for (const { folder, manifest } of shards) {
    // Each boundary file holds exactly the manifest's rows, each of the key's shape: a row more or less would shift
    // every image after it onto another image's outputs.
    const files: NpyArray[] = [];
    for (const [b, shape] of shapes.entries()) {
      const path = join(folder, boundaryFile(b));
      files.push(readNpy(await readFile(path), path, { rows: manifest.files.length, rowShape: shape }));
    }
    manifest.files.forEach((file, r) => {
      rows.push({ position: file.position, file, parts: files.map((npy) => npyRow(npy, r)) });
    });
  }
  rows.sort((a, b) => a.position - b.position);
  await mkdir(out, { recursive: true });
  for (const leftover of sweepStaleTemps(out)) notice(`removed ${leftover}, left by an interrupted merge`);
  // A previous merge's record goes first: a merge killed midway never leaves a folder that reads as a complete cache.
  await rm(join(out, CACHE_FILE), { force: true });
  const outputs: CacheRecord['outputs'] = [];
  for (let b = 0; b < shapes.length; b++) {
    const bytes = Buffer.concat([npyHeader([rows.length, ...shapes[b]!]), ...rows.map((r) => r.parts[b]!)]);
    await writeFileAtomic(join(out, boundaryFile(b)), bytes);
    outputs.push({ name: boundaryFile(b), sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  const k = first.key;
  const record: CacheRecord = {
    kind: 'tl-frozen-cache', version: 1, tlVersion: TL_VERSION,
    key: { model: String(k['model']), frozenDigest: String(k['frozenDigest']), freeze: Number(k['freeze']), boundaryLayers: layers, boundaryShapes: shapes, inputSize: Number(k['inputSize']), preprocess: String(k['preprocess']), resize: String(k['resize']), maxPixels: Number(k['maxPixels']), engine: String(k['engine']), images: Number(k['images']), dataset: String(k['dataset']) },
    files: rows.map((r) => ({ rel: r.file.rel, size: r.file.size, mtimeMs: r.file.mtimeMs })),
    outputs,
  };
  await writeJsonAtomic(join(out, CACHE_FILE), record);
  return { command: 'cache', shards: shards.length, rows: rows.length, files: [...outputs.map((o) => join(out, o.name)), join(out, CACHE_FILE)], skipped: shards.flatMap((s) => s.manifest.skipped) };
}

/**
 * Joins the shards of `tl eval`: every image's probabilities in the single-machine order, and the metrics computed
 * over them all (what `tl eval` on one machine reports), written to `out` as JSON.
 */
async function mergeEval(shards: { folder: string; manifest: Manifest }[], out: string): Promise<MergeResult> {
  await checkOutputPath(out);
  const first = shards[0]!.manifest;
  const classes = JSON.parse(String(first.key['classes'])) as string[];
  const rows: { position: number; probs: Buffer; path: string; label: number }[] = [];
  for (const { folder, manifest } of shards) {
    const npyPath = join(folder, 'probs.npy');
    const npy = readNpy(await readFile(npyPath), npyPath, { rows: manifest.files.length, rowShape: [classes.length] });
    const lines = (await readFile(join(folder, 'rows.jsonl'), 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { path: string; label: number });
    if (lines.length !== manifest.files.length) throw new DatasetError(`${join(folder, 'rows.jsonl')} holds ${lines.length} rows; its manifest lists ${manifest.files.length}.`);
    manifest.files.forEach((f, r) => rows.push({ position: f.position, probs: npyRow(npy, r), path: lines[r]!.path, label: lines[r]!.label }));
  }
  rows.sort((a, b) => a.position - b.position);
  const cat = Buffer.concat(rows.map((r) => r.probs));
  const joined = new Float32Array(cat.buffer.slice(cat.byteOffset, cat.byteOffset + cat.byteLength));
  const metrics = computeMetrics(joined, rows.map((r) => r.label), classes, { paths: rows.map((r) => r.path) });
  const k = first.key;
  const result = { run: String(k['run']), model: String(k['model']), data: String(k['data']), split: String(k['split']), usedRunSplit: Boolean(k['usedRunSplit']), classes, metrics };
  await writeJsonAtomic(out, result);
  return { command: 'eval', shards: shards.length, rows: rows.length, files: [out], skipped: unique(shards.flatMap((s) => s.manifest.skipped)), eval: result };
}

/** Skipped files once each (every shard of tl eval lists the files its scan skipped). */
function unique(skipped: Manifest['skipped']): Manifest['skipped'] {
  const seen = new Set<string>();
  return skipped.filter((s) => !seen.has(s.path) && Boolean(seen.add(s.path)));
}
