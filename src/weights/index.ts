// Pretrained models: a registry variant built Keras-faithfully, then filled from its weight source.
import type { LayersModel, Tf } from '../backend/index.js';
import { WeightsError } from '../errors.js';
import { initializeWeights } from '../registry/init.js';
import { buildVariant, resolveVariant, type Variant, type WeightSource } from '../registry/index.js';
import { storeRoot } from '../store/index.js';
import { assignWeights, disposeWeights, groupByLayer, type AssignReport, type NamedWeights } from './assign.js';
import { extractNsfwjsModel } from './nsfwjs.js';
import type { DownloadProgress } from './download.js';
import { readWeights } from './tfjs.js';

export interface PretrainedOptions {
  includeTop: boolean;
  /** `pretrained` loads the variant's weights; `random` keeps the builder's initialisation. */
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  store?: string;
  /** Seed of the initialisation when `weights` is `random`. */
  seed?: number;
  /** Progress of weight downloads (bytes, rate). */
  onDownload?: (p: DownloadProgress) => void;
  /** Aborted on SIGINT/SIGTERM: a download in progress stops at once. */
  signal?: AbortSignal;
}

export interface Pretrained {
  model: LayersModel;
  variant: Variant;
  source: WeightSource | null;
  report: AssignReport | null;
}

/** The weight source to use: a bundled one first, then the file for this top and input size (else the default size's). */
function pickSource(variant: Variant, includeTop: boolean, inputSize: number): WeightSource | undefined {
  const candidates = variant.weights.filter((w) => w.includeTop || !includeTop);
  const forSize = (size: number) => candidates.filter((w) => w.kind !== 'keras-h5' || w.inputSize === undefined || w.inputSize === size);
  const usable = forSize(inputSize).length > 0 ? forSize(inputSize) : forSize(variant.inputSize);
  return usable.find((w) => w.kind === 'nsfwjs') ?? usable.find((w) => w.includeTop === includeTop) ?? usable[0];
}

/** Builds a registry model and loads its pretrained weights. */
export async function loadPretrained(tf: Tf, name: string, options: PretrainedOptions): Promise<Pretrained> {
  const { variant } = resolveVariant(name);
  const model = buildVariant(tf, name, { includeTop: options.includeTop, ...(options.inputSize ? { inputSize: options.inputSize } : {}) });
  if (options.weights === 'random') {
    initializeWeights(tf, model, options.seed ?? 0);
    return { model, variant, source: null, report: null };
  }
  const source = pickSource(variant, options.includeTop, options.inputSize ?? variant.inputSize);
  if (source === undefined) {
    model.dispose();
    throw new WeightsError(`Model '${name}' has no weight source ${options.includeTop ? 'with' : 'without'} its top.`);
  }
  try {
    const report = await loadSource(tf, model, source, variant.family, options.store ?? storeRoot(), options.onDownload, options.signal);
    return { model, variant, source, report };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/**
 * Keras 2.2 numbered unnamed layers from 1 (`conv2d_1`), tf.keras from 0 (`conv2d`, then `conv2d_1`); the same
 * source code creates them in the same order, so shifting the number maps one onto the other.
 */
export function renameKeras2AutoNames(weights: NamedWeights): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [layer, values] of weights) {
    const m = /^(conv2d|batch_normalization|activation|max_pooling2d|average_pooling2d|concatenate)_(\d+)$/.exec(layer);
    const n = m ? Number(m[2]) - 1 : -1;
    out.set(m ? (n === 0 ? m[1]! : `${m[1]}_${n}`) : layer, values);
  }
  return out;
}

async function loadSource(tf: Tf, model: LayersModel, source: WeightSource, family: string, store: string, onDownload?: (p: DownloadProgress) => void, signal?: AbortSignal): Promise<AssignReport> {
  if (source.kind === 'nsfwjs') {
    const modelJson = await extractNsfwjsModel(store, source.model);
    const grouped = groupByLayer(await readWeights(tf, modelJson));
    const weights = source.keras2AutoNames ? renameKeras2AutoNames(grouped) : grouped;
    try {
      return assignWeights(model, weights, { source: modelJson });
    } finally {
      disposeWeights(weights);
    }
  }
  const { loadKerasWeights } = await import('./keras.js');
  return loadKerasWeights(tf, model, source, store, { family, ...(onDownload ? { onProgress: onDownload } : {}), ...(signal ? { signal } : {}) });
}
