// Keras HDF5 weights for registry variants: fetched into the store, hash-checked, then assigned by layer name.
import type { LayersModel, Tensor, Tf } from '../backend/index.js';
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
  // Keras 3 names a DepthwiseConv2D's kernel `kernel`; Keras 2 and TensorFlow.js, `depthwise_kernel`. Its weights
  // format names no weight at all (`#0`, `#1`, ...): the layer's own order gives the names.
  const depthwise = new Set(model.layers.filter((l) => l.getClassName() === 'DepthwiseConv2D').map((l) => l.name));
  const ordered = new Map(model.layers.map((l) => [l.name, l.weights.map((w) => splitWeightName(w.originalName).weight)]));
  // Keras 3's weights format also names its layers by class and order (`conv2d_3`, the fourth Conv2D), not by name.
  const byObjectName = objectNames(model);
  const ownLayer = (owner: string, weight: string) => (weight.startsWith('#') ? (byObjectName.get(owner) ?? owner) : owner);
  const ownName = (owner: string, weight: string) => {
    const index = weight.startsWith('#') ? Number(weight.slice(1)) : -1;
    if (index >= 0) return ordered.get(ownLayer(owner, weight))?.[index] ?? weight;
    return weight === 'kernel' && depthwise.has(owner) ? 'depthwise_kernel' : weight;
  };
  const h5 = await readKerasH5(path, {
    select: (stored, storedWeight, shape) => {
      const owner = ownLayer(stored, storedWeight);
      const weight = ownName(stored, storedWeight);
      const want = expected.get(owner)?.get(weight);
      if (want === undefined) return false;
      if (want.length !== shape.length || want.some((d, i) => d !== shape[i])) {
        throw new WeightsError(`Shape mismatch for '${owner}/${weight}' in ${path}: the model expects [${want.join(', ')}], the weights have [${shape.join(', ')}].`);
      }
      return true;
    },
  });
  const read = h5ToTensors(tf, h5);
  const weights: NamedWeights = new Map();
  for (const [stored, named] of read) {
    const renamed = new Map<string, Tensor>();
    for (const [name, t] of named) renamed.set(ownName(stored, name), t);
    weights.set(ownLayer(stored, [...named.keys()][0] ?? ''), renamed);
  }
  try {
    const report = assignWeights(model, weights, { source: path, ...options });
    for (const [layer, named] of h5.shapes) if (!expected.has(ownLayer(layer, [...named.keys()][0] ?? ''))) report.unused.push(layer);
    return report;
  } finally {
    disposeWeights(weights);
  }
}

/** Keras's `to_snake_case` of a class name: `DepthwiseConv2D` -> `depthwise_conv2d`. */
function snakeCase(name: string): string {
  return name.replace(/(.)([A-Z][a-z0-9]+)/g, '$1_$2').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

/**
 * The names Keras 3's weights format gives `model`'s layers (each class's layers in the model's order: `conv2d`,
 * `conv2d_1`, ...), mapped to the layers' own names.
 */
function objectNames(model: LayersModel): Map<string, string> {
  const seen = new Map<string, number>();
  const out = new Map<string, string>();
  for (const layer of model.layers) {
    const base = snakeCase(layer.getClassName());
    const k = seen.get(base) ?? 0;
    seen.set(base, k + 1);
    out.set(k === 0 ? base : `${base}_${k}`, layer.name);
  }
  return out;
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
