// tfjs LayersModel folders (model.json + binary shards): reading, with shard paths confined to the folder.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { NamedTensorMap, Tf } from '../backend/index.js';
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

/** Resolves a shard path against the model folder, refusing anything that escapes it. */
export function shardPath(folder: string, path: string): string {
  if (isAbsolute(path) || /^[a-z][a-z0-9+.-]*:/i.test(path)) {
    throw new WeightsError(`Shard path '${path}' in ${join(folder, 'model.json')} is not relative to the model folder; refused.`);
  }
  const full = resolve(folder, path);
  const rel = relative(resolve(folder), full);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw new WeightsError(`Shard path '${path}' in ${join(folder, 'model.json')} leaves the model folder; refused.`);
  }
  return full;
}

/** Reads and parses model.json. */
export async function readModelJson(modelJsonPath: string): Promise<ModelJson> {
  let text: string;
  try {
    text = await readFile(modelJsonPath, 'utf8');
  } catch (err) {
    throw new WeightsError(`Cannot read ${modelJsonPath}: ${(err as Error).message}`, { cause: err });
  }
  let json: ModelJson;
  try {
    json = JSON.parse(text) as ModelJson;
  } catch (err) {
    throw new WeightsError(`${modelJsonPath} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (json.modelTopology === undefined || !Array.isArray(json.weightsManifest)) {
    throw new WeightsError(`${modelJsonPath} is not a tfjs LayersModel (needs modelTopology and weightsManifest).`);
  }
  return json;
}

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
    const expected = group.weights.reduce((sum, w) => sum + byteSize(w), 0);
    if (joined.byteLength !== expected) {
      throw new WeightsError(`Weight shards of ${modelJsonPath} hold ${joined.byteLength} bytes; the manifest describes ${expected}.`);
    }
    const arrayBuffer = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
    Object.assign(out, tf.io.decodeWeights(arrayBuffer, group.weights as Parameters<Tf['io']['decodeWeights']>[1]));
  }
  return out;
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
