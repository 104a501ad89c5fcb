// `tl cache DATA --model M --freeze K`: the frozen part's outputs at the cut (the tail's inputs, what `tl finetune`
// caches) for every image of the dataset, written as one .npy per boundary tensor, an index and cache.json (what they
// were computed with). Sharded (`--shard I/N`), each shard writes its images and a manifest; `tl merge` joins them
// into exactly the single-machine folder; `tl finetune --cache DIR` trains the tail from it without running the
// frozen part.
import type { EngineName } from '../engine/names.js';
import { createHash } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendInfo, Tf } from '../backend/index.js';
import { attachHead, cutModel, resolveFreeze } from '../model/index.js';
import { openDataset, type ImageItem, type LabelsSpec, type MultiLabelSpec, type ResizeMode } from '../data/index.js';
import { onnxSessionFor } from '../engine/index.js';
import { UsageError } from '../errors.js';
import { boundaryFile, CACHE_FILE, type CacheRecord } from './folder.js';
import type { PreprocessMode } from '../registry/index.js';
import { datasetDigest, finishShard, frozenDigest, openShardFolder, shardOf, type Shard } from '../shard/index.js';
import { FrozenPart } from './part.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { TL_VERSION } from '../version.js';
import { loadBackbone } from '../weights/backbone.js';
import { npyHeader } from '../util/npy.js';

export interface CacheOptions {
  data: string;
  /** Labels from a CSV file instead of class folders. */
  labels?: LabelsSpec;
  /** Read the dataset as multi-label (an image under several folders is one image). */
  multiLabel?: MultiLabelSpec;
  model: string;
  /** The `--freeze` count, layer name or all (as `tl finetune` takes it; not auto or default). */
  freeze: string;
  out: string;
  batchSize: number;
  engine: EngineName;
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

export interface CacheResult {
  folder: string;
  images: number;
  boundaryLayers: string[];
  bytesPerImage: number;
  seconds: number;
  shard?: Shard & { folder: string };
}

export async function buildCache(tf: Tf, backend: BackendInfo, options: CacheOptions): Promise<CacheResult> {
  const started = performance.now();
  if (options.freeze === 'auto' || options.freeze === 'default') throw new UsageError(`--freeze ${options.freeze}: tl cache needs the count (or layer, or all) the fine-tune will use, e.g. --freeze 100.`);
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), keepHead: false });
  const backbone = source.model;
  const size = options.inputSize ?? source.inputSize;
  try {
    const dataset = await openDataset(options.data, { val: 0, test: 0, seed: options.seed, size, resize: options.resize, maxPixels: options.maxPixels, cacheBytes: 0, ...(options.labels ? { labels: options.labels } : {}), ...(options.multiLabel ? { multiLabel: options.multiLabel } : {}) });
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
