// Keras HDF5 weights for registry variants: fetched into the store, hash-checked, then assigned by layer name.
import type { LayersModel, Tf } from '../backend/index.js';
import type { WeightSource } from '../registry/index.js';
import { WeightsError } from '../errors.js';
import { kerasStorePath } from '../store/paths.js';
import { assignWeights, disposeWeights, splitWeightName, type AssignReport, type NamedWeights } from './assign.js';
import { download, type DownloadProgress } from './download.js';
import { readKerasH5, type KerasH5 } from './h5.js';

/** Converts a read .h5 file into tensors grouped by layer. */
export function h5ToTensors(tf: Tf, h5: KerasH5): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [layer, weights] of h5.layers) {
    out.set(layer, new Map([...weights].map(([name, w]) => [name, tf.tensor(w.data, w.shape, 'float32')])));
  }
  return out;
}

/**
 * Assigns the weights of a Keras .h5 file to `model` by layer name. Each weight's shape is checked against the model
 * before its values are read, and weights of layers the model does not have are never read.
 */
export async function assignKerasFile(tf: Tf, model: LayersModel, path: string, options: { allowMissing?: (layer: string) => boolean } = {}): Promise<AssignReport> {
  const expected = new Map(model.layers.map((l) => [l.name, new Map(l.weights.map((w) => [splitWeightName(w.originalName).weight, w.shape]))]));
  const h5 = await readKerasH5(path, {
    select: (owner, weight, shape) => {
      const want = expected.get(owner)?.get(weight);
      if (want === undefined) return false;
      if (want.length !== shape.length || want.some((d, i) => d !== shape[i])) {
        throw new WeightsError(`Shape mismatch for '${owner}/${weight}' in ${path}: the model expects [${want.join(', ')}], the weights have [${shape.join(', ')}].`);
      }
      return true;
    },
  });
  const weights = h5ToTensors(tf, h5);
  try {
    const report = assignWeights(model, weights, { source: path, ...options });
    for (const layer of h5.shapes.keys()) if (!expected.has(layer)) report.unused.push(layer);
    return report;
  } finally {
    disposeWeights(weights);
  }
}

/**
 * The most bytes a Keras weight file for `model` can hold: float32 parameters plus HDF5 overhead, and the ImageNet
 * top when the file has one that the model does not (VGG's two 4096-wide dense layers; a 1000-class classifier
 * elsewhere).
 */
export function maxKerasBytes(model: LayersModel, source: WeightSource & { kind: 'keras-h5' }, family: string): number {
  const hasTop = model.layers.some((l) => l.name === 'predictions' || l.name === 'Predictions' || l.name === 'reshape_2');
  const top = source.includeTop && !hasTop ? (family === 'vgg' ? 124_000_000 : 4_000_000) : 0;
  return Math.ceil((model.countParams() + top) * 4 * 1.05) + 16 * 2 ** 20;
}

/** Loads a variant's Keras .h5 weights (from the store, downloading when missing). */
export async function loadKerasWeights(tf: Tf, model: LayersModel, source: WeightSource & { kind: 'keras-h5' }, store: string, options: { family: string; onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal }): Promise<AssignReport> {
  const path = await download(source.url, kerasStorePath(store, source.url), { hash: source.hash, maxBytes: maxKerasBytes(model, source, options.family), ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) });
  return assignKerasFile(tf, model, path);
}
