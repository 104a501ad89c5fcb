// `tl cache DATA --model M --freeze K`: the frozen part's outputs at the cut (the tail's inputs, what `tl finetune`
// caches) for every image of the dataset, written as one .npy per boundary tensor, an index and cache.json (what they
// were computed with). Sharded (`--shard I/N`), each shard writes its images and a manifest; `tl merge` joins them
// into exactly the single-machine folder; `tl finetune --features DIR` trains the tail from it without running the
// frozen part.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { BackendInfo, Tf } from '../backend/index.js';
import { attachHead, cutModel, resolveFreeze } from '../cut/index.js';
import { openDataset, type ImageItem, type ResizeMode } from '../data/index.js';
import { onnxSessionFor } from '../engine/index.js';
import { DatasetError, UsageError } from '../errors.js';
import type { PreprocessMode } from '../registry/index.js';
import { datasetDigest, finishShard, frozenDigest, openShardFolder, shardOf, type Shard } from '../shard/index.js';
import { FrozenPart } from '../frozen/part.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { TL_VERSION } from '../version.js';
import { loadBackbone } from '../weights/backbone.js';
import { npyHeader, readNpy, type NpyArray } from '../util/npy.js';

export interface CacheOptions {
  data: string;
  model: string;
  /** The `--freeze` count, layer name or all (as `tl finetune` takes it; not auto or default). */
  freeze: string;
  out: string;
  batchSize: number;
  engine: 'onnx' | 'tfjs';
  inputSize?: number;
  preprocess?: PreprocessMode;
  weights: 'pretrained' | 'random';
  seed: number;
  resize: ResizeMode;
  maxPixels: number;
  store?: string;
  shard?: Shard;
  onProgress?: (done: number, total: number) => void;
}

export const CACHE_FILE = 'cache.json';

/** cache.json: what the cache holds and what it was computed with (`tl finetune --features` checks every field). */
export const cacheRecordSchema = z.object({
  kind: z.literal('tl-frozen-cache'),
  version: z.literal(1),
  tlVersion: z.string(),
  key: z.object({
    model: z.string(),
    frozenDigest: z.string().regex(/^[0-9a-f]{64}$/),
    freeze: z.number().int().min(1),
    boundaryLayers: z.array(z.string()),
    boundaryShapes: z.array(z.array(z.number().int())),
    inputSize: z.number().int(),
    preprocess: z.string(),
    resize: z.string(),
    maxPixels: z.number(),
    engine: z.string(),
    images: z.number().int(),
    dataset: z.string(),
  }),
  /** One row per image, in the .npy files' order. */
  files: z.array(z.object({ rel: z.string(), size: z.number().int(), mtimeMs: z.number() })),
  /** Output files with their sha256 (checked before trusting them). */
  outputs: z.array(z.object({ name: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type CacheRecord = z.infer<typeof cacheRecordSchema>;

export interface CacheResult {
  folder: string;
  images: number;
  boundaryLayers: string[];
  bytesPerImage: number;
  seconds: number;
  shard?: Shard & { folder: string };
}

/** One boundary tensor's file. */
export const boundaryFile = (b: number) => `boundary-${b}.npy`;

export async function buildCache(tf: Tf, backend: BackendInfo, options: CacheOptions): Promise<CacheResult> {
  const started = performance.now();
  if (options.freeze === 'auto' || options.freeze === 'default') throw new UsageError(`--freeze ${options.freeze}: tl cache needs the count (or layer, or all) the fine-tune will use, e.g. --freeze 100.`);
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), keepHead: false });
  const backbone = source.model;
  const size = options.inputSize ?? source.inputSize;
  try {
    const dataset = await openDataset(options.data, { val: 0, test: 0, seed: options.seed, size, resize: options.resize, maxPixels: options.maxPixels, cacheBytes: 0 });
    // Every decodable image, ordered by path relative to the root (the split is the fine-tune's business).
    const all: ImageItem[] = [...dataset.splits.train, ...dataset.splits.val, ...dataset.splits.test].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    const shard = options.shard;
    const items = shard ? all.filter((item) => shardOf(item.rel, shard.count) === shard.index) : all;
    const frozen = resolveFreeze(backbone, options.freeze, options.model);
    if (frozen < 1) throw new UsageError(`--freeze ${options.freeze}: with nothing frozen there is no frozen part to cache.`);
    const full = attachHead(tf, backbone, { classes: Math.max(2, dataset.classes.length), dropout: 0, name: 'cache_head' });
    const cut = cutModel(tf, full, new Set(backbone.layers.slice(0, frozen).map((l) => l.name)));
    const part = new FrozenPart(tf, cut, source.preprocess, dataset, null, null, options.engine === 'onnx' ? () => onnxSessionFor(cut.frozen!, options.store ? { store: options.store } : {}) : null);
    const floats = cut.boundaryShapes.map((s) => s.reduce((a, b) => a * b, 1));
    const chunks: Float32Array[][] = cut.boundaryShapes.map(() => []);
    const done: ImageItem[] = [];
    try {
      for await (const batch of dataset.source.batches(items, { batchSize: options.batchSize })) {
        const arrays = await part.boundary(batch);
        arrays.forEach((a, b) => chunks[b]!.push(a));
        done.push(...batch.items);
        options.onProgress?.(done.length, items.length);
      }
    } finally {
      await part.close();
      cut.tail.dispose();
    }
    // A previous attempt's record goes first, so a failed re-run is never taken for a complete cache or shard.
    const folder = shard ? await openShardFolder(options.out, shard) : options.out;
    if (!shard) {
      await mkdir(folder, { recursive: true });
      await rm(join(folder, CACHE_FILE), { force: true });
    }
    const outputs: { name: string; sha256: string }[] = [];
    for (let b = 0; b < floats.length; b++) {
      const body = Buffer.concat(chunks[b]!.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));
      const bytes = Buffer.concat([npyHeader([done.length, ...cut.boundaryShapes[b]!]), body]);
      await writeFileAtomic(join(folder, boundaryFile(b)), bytes);
      outputs.push({ name: boundaryFile(b), sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    const key: CacheRecord['key'] = {
      model: source.name, frozenDigest: frozenDigest(backbone, frozen), freeze: frozen, boundaryLayers: cut.boundaryLayers, boundaryShapes: cut.boundaryShapes,
      inputSize: size, preprocess: source.preprocess, resize: options.resize, maxPixels: options.maxPixels, engine: options.engine, images: all.length, dataset: await datasetDigest(all),
    };
    if (shard) {
      const position = new Map(all.map((item, i) => [item, i]));
      const shardKey = { ...key, boundaryLayers: JSON.stringify(key.boundaryLayers), boundaryShapes: JSON.stringify(key.boundaryShapes) };
      const skipped = dataset.skipped.filter((k) => shardOf(relOf(options.data, k.path), shard.count) === shard.index);
      await finishShard(folder, { command: 'cache', shard, key: shardKey }, done.map((item) => ({ path: item.path, rel: item.rel, position: position.get(item)! })), skipped, outputs.map((o) => o.name));
    } else {
      const stats = await Promise.all(done.map(async (item) => ({ item, s: await stat(item.path) })));
      const record: CacheRecord = { kind: 'tl-frozen-cache', version: 1, tlVersion: TL_VERSION, key, files: stats.map(({ item, s }) => ({ rel: item.rel, size: s.size, mtimeMs: Math.round(s.mtimeMs) })), outputs };
      await writeJsonAtomic(join(folder, CACHE_FILE), record);
    }
    return { folder, images: done.length, boundaryLayers: cut.boundaryLayers, bytesPerImage: floats.reduce((a, b) => a + b, 0) * 4, seconds: (performance.now() - started) / 1000, ...(shard ? { shard: { ...shard, folder } } : {}) };
  } finally {
    backbone.dispose();
  }
}

/** A skipped file's path relative to the dataset root (the shard it belongs to). */
function relOf(root: string, path: string): string {
  const r = path.startsWith(root) ? path.slice(root.length).replace(/^[/\\]+/, '') : path;
  return r.split('\\').join('/');
}

/** Reads and verifies a cache folder (cache.json valid, every file its record's); returns the record. */
export async function readCache(folder: string): Promise<CacheRecord> {
  const path = join(folder, CACHE_FILE);
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) throw new UsageError(`${folder} is not a frozen-part cache (no ${CACHE_FILE}): make one with tl cache, or tl merge the shards of one.`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DatasetError(`${path} is not valid JSON.`);
  }
  const parsed = cacheRecordSchema.safeParse(json);
  if (!parsed.success) throw new DatasetError(`${path} is not a tl frozen-part cache record (${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? ''}).`);
  const names = parsed.data.key.boundaryShapes.map((_, b) => boundaryFile(b));
  if (parsed.data.outputs.map((o) => o.name).join('\n') !== names.join('\n')) throw new DatasetError(`${path} lists the outputs ${parsed.data.outputs.map((o) => o.name).join(', ') || '(none)'}; its key needs ${names.join(', ')}.`);
  for (const o of parsed.data.outputs) {
    const bytes = await readFile(join(folder, o.name)).catch(() => null);
    if (bytes === null) throw new DatasetError(`${join(folder, o.name)} is missing.`);
    if (createHash('sha256').update(bytes).digest('hex') !== o.sha256) throw new DatasetError(`${join(folder, o.name)} does not match ${CACHE_FILE} (changed or damaged): make the cache again.`);
  }
  return parsed.data;
}

/** The cached arrays of each image, by path relative to the dataset root (one Float32Array per boundary tensor). */
export async function loadCacheArrays(folder: string, record: CacheRecord): Promise<Map<string, Float32Array[]>> {
  const shapes = record.key.boundaryShapes;
  if (record.outputs.length !== shapes.length) throw new DatasetError(`${join(folder, CACHE_FILE)} lists ${record.outputs.length} output files for ${shapes.length} boundary tensors.`);
  // The hash proves the file is the one the record names; the header, byte length and row count prove the record
  // describes it (a record whose rows and files disagree would hand one image another's outputs).
  const files: NpyArray[] = [];
  for (const [b, shape] of shapes.entries()) {
    const path = join(folder, boundaryFile(b));
    files.push(readNpy(await readFile(path), path, { rows: record.files.length, rowShape: shape }));
  }
  const out = new Map<string, Float32Array[]>();
  record.files.forEach((f, r) => {
    if (out.has(f.rel)) throw new DatasetError(`${join(folder, CACHE_FILE)} lists ${f.rel} twice.`);
    out.set(f.rel, files.map((npy) => {
      const start = npy.body.byteOffset + r * npy.rowBytes;
      return new Float32Array(npy.body.buffer.slice(start, start + npy.rowBytes));
    }));
  });
  return out;
}
