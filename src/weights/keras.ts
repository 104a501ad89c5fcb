// Keras HDF5 weights for registry variants: fetched into the store, hash-checked, then assigned by layer name.
import { basename, join } from 'node:path';
import type { LayersModel, Tf } from '../backend/index.js';
import type { WeightSource } from '../registry/index.js';
import { assignWeights, disposeWeights, type AssignReport, type NamedWeights } from './assign.js';
import { download, type DownloadProgress } from './download.js';
import { readKerasH5, type KerasH5 } from './h5.js';

/** Where a Keras weight file lives in the store. */
export function kerasStorePath(store: string, url: string): string {
  return join(store, 'weights', 'keras', basename(new URL(url).pathname));
}

/** Converts a read .h5 file into tensors grouped by layer. */
export function h5ToTensors(tf: Tf, h5: KerasH5): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [layer, weights] of h5.layers) {
    out.set(layer, new Map([...weights].map(([name, w]) => [name, tf.tensor(w.data, w.shape, 'float32')])));
  }
  return out;
}

/** Assigns the weights of a Keras .h5 file to `model` by layer name. */
export async function assignKerasFile(tf: Tf, model: LayersModel, path: string, options: { allowMissing?: (layer: string) => boolean } = {}): Promise<AssignReport> {
  const weights = h5ToTensors(tf, await readKerasH5(path));
  try {
    return assignWeights(model, weights, { source: path, ...options });
  } finally {
    disposeWeights(weights);
  }
}

/** Loads a variant's Keras .h5 weights (from the store, downloading when missing). */
export async function loadKerasWeights(tf: Tf, model: LayersModel, source: WeightSource & { kind: 'keras-h5' }, store: string, onProgress?: (p: DownloadProgress) => void): Promise<AssignReport> {
  const path = await download(source.url, kerasStorePath(store, source.url), { hash: source.hash, ...(onProgress ? { onProgress } : {}) });
  return assignKerasFile(tf, model, path);
}
