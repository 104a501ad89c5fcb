// tfjs LayersModel folders (model.json + binary shards): reading, with shard paths confined to the folder.
import { realpathSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { NamedTensorMap, Tf } from '../backend/index.js';
import { z } from 'zod';
import { WeightsError } from '../errors.js';
import { customLayers } from '../registry/layers.js';

interface WeightsManifestGroup {
  paths: string[];
  weights: { name: string; shape: number[]; dtype: string; quantization?: unknown }[];
}

export interface ModelJson {
  modelTopology: unknown;
  weightsManifest: WeightsManifestGroup[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  userDefinedMetadata?: Record<string, unknown>;
}

/** The most bytes a model.json may have (topology and manifest; the weights are in the shards). */
export const MAX_MODEL_JSON_BYTES = 64 * 2 ** 20;

const inside = (root: string, full: string) => {
  const rel = relative(root, full);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
};

/**
 * Resolves a shard path against the model folder, refusing anything that escapes it: by its name, and, for a file
 * that exists, by its real path (a symlink to a file outside the folder is refused too).
 */
export function shardPath(folder: string, path: string): string {
  if (isAbsolute(path) || /^[a-z][a-z0-9+.-]*:/i.test(path) || path.includes('\\')) {
    throw new WeightsError(`Shard path '${path}' in ${join(folder, 'model.json')} is not relative to the model folder; refused.`);
  }
  const full = resolve(folder, path);
  if (!inside(resolve(folder), full)) {
    throw new WeightsError(`Shard path '${path}' in ${join(folder, 'model.json')} leaves the model folder; refused.`);
  }
  let real: string | null = null;
  try {
    real = realpathSync(full);
  } catch {
    // Not there (yet): a download writes it; a read reports it missing.
  }
  if (real !== null && !inside(realpathSync(folder), real)) {
    throw new WeightsError(`Shard '${path}' in ${join(folder, 'model.json')} is a link to ${real}, outside the model folder; refused.`, { suggestion: 'Copy the shard into the model folder instead of linking to it.' });
  }
  return full;
}

/** Reads and parses model.json. */
export async function readModelJson(modelJsonPath: string): Promise<ModelJson> {
  let text: string;
  try {
    const size = (await stat(modelJsonPath)).size;
    if (size > MAX_MODEL_JSON_BYTES) throw new WeightsError(`${modelJsonPath} is ${size} bytes; a model.json has at most ${MAX_MODEL_JSON_BYTES} (its weights belong in the shards).`);
    text = await readFile(modelJsonPath, 'utf8');
  } catch (err) {
    if (err instanceof WeightsError) throw err;
    throw new WeightsError(`Cannot read ${modelJsonPath}: ${(err as Error).message}`, { cause: err });
  }
  let json: ModelJson;
  try {
    json = JSON.parse(text) as ModelJson;
  } catch (err) {
    throw new WeightsError(`${modelJsonPath} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (json === null || typeof json !== 'object' || json.modelTopology === undefined || !Array.isArray(json.weightsManifest)) {
    throw new WeightsError(`${modelJsonPath} is not a tfjs LayersModel (needs modelTopology and weightsManifest).`);
  }
  // The manifest decides how many bytes are read and how they are decoded: checked before it is used.
  const manifest = manifestSchema.safeParse(json.weightsManifest);
  if (!manifest.success) {
    const issue = manifest.error.issues[0]!;
    const where = issue.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('');
    const [g, key, w] = issue.path;
    const name = key === 'weights' && typeof g === 'number' && typeof w === 'number' ? (json.weightsManifest[g]?.weights?.[w] as { name?: unknown } | undefined)?.name : undefined;
    throw new WeightsError(`${modelJsonPath}: weightsManifest${where}${typeof name === 'string' ? ` (weight '${name}')` : ''}: ${issue.message}.`);
  }
  return json;
}

/** A weights manifest tl reads: float32 or int32 weights (optionally uint8/uint16/float16-quantized), shapes of non-negative integers. */
const manifestSchema = z.array(z.object({
  paths: z.array(z.string().min(1)),
  weights: z.array(z.object({
    name: z.string().min(1),
    shape: z.array(z.number().int().min(0).max(2 ** 31)),
    dtype: z.enum(['float32', 'int32'], { message: 'tl reads float32 or int32 weights' }),
    quantization: z.object({ dtype: z.enum(['uint8', 'uint16', 'float16']) }).passthrough().optional(),
  }).passthrough()),
}).passthrough());

/** Reads every weight of a LayersModel folder (float32 or uint8/float16-quantized), dequantized to float32. */
export async function readWeights(tf: Tf, modelJsonPath: string): Promise<NamedTensorMap> {
  const json = await readModelJson(modelJsonPath);
  const folder = dirname(modelJsonPath);
  const out: NamedTensorMap = {};
  for (const group of json.weightsManifest) {
    const buffers = await Promise.all(group.paths.map(async (p) => {
      const file = shardPath(folder, p);
      try {
        return await readFile(file);
      } catch (err) {
        throw new WeightsError(`Cannot read weight shard ${file}: ${(err as Error).message}`, { cause: err });
      }
    }));
    const joined = Buffer.concat(buffers);
    const expected = groupBytes(group);
    if (joined.byteLength !== expected) {
      throw new WeightsError(`Weight shards of ${modelJsonPath} hold ${joined.byteLength} bytes; the manifest describes ${expected}.`);
    }
    const arrayBuffer = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
    Object.assign(out, tf.io.decodeWeights(arrayBuffer, group.weights as Parameters<Tf['io']['decodeWeights']>[1]));
  }
  return out;
}

/** Bytes a manifest group's shards hold together. */
export function groupBytes(group: WeightsManifestGroup): number {
  return group.weights.reduce((sum, w) => sum + byteSize(w), 0);
}

function byteSize(w: WeightsManifestGroup['weights'][number]): number {
  const count = w.shape.reduce((a, b) => a * b, 1);
  const q = w.quantization as { dtype?: string } | undefined;
  if (q?.dtype === 'uint8') return count;
  if (q?.dtype === 'uint16' || q?.dtype === 'float16') return count * 2;
  return count * 4;
}

/** Loads a whole LayersModel from a folder (topology and weights), as tf.loadLayersModel would. */
export async function loadLayersModelFromFolder(tf: Tf, modelJsonPath: string) {
  customLayers(tf);
  const json = await readModelJson(modelJsonPath);
  const weights = await readWeights(tf, modelJsonPath);
  const specs = json.weightsManifest.flatMap((g) => g.weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' as const })));
  const data = await Promise.all(specs.map(async (s) => (await weights[s.name]!.data()) as Float32Array));
  const total = data.reduce((n, d) => n + d.byteLength, 0);
  const buffer = new Uint8Array(total);
  let offset = 0;
  for (const d of data) {
    buffer.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), offset);
    offset += d.byteLength;
  }
  for (const t of Object.values(weights)) t.dispose();
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology as object, weightSpecs: specs, weightData: buffer.buffer }));
}
