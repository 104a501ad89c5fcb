// A folder of the frozen part's outputs, as `tl cache` writes it (and `tl merge` joins its shards into): one .npy per
// boundary tensor and cache.json, which says what they were computed with and holds each file's sha256. Read back only
// after every hash, header, byte length and row count agrees with the record (`tl finetune --cache`, `tl merge`).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { DatasetError, UsageError } from '../errors.js';
import { readNpy, type NpyArray } from '../util/npy.js';

export const CACHE_FILE = 'cache.json';

/** cache.json: what the cache holds and what it was computed with (`tl finetune --cache` checks every field). */
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

/** One boundary tensor's file. */
export const boundaryFile = (b: number) => `boundary-${b}.npy`;

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
