// Pretrained models: a registry variant built Keras-faithfully, then filled from its weight source.
import type { LayersModel, Tf } from '../backend/index.js';
import { WeightsError } from '../errors.js';
import { initializeWeights } from '../registry/init.js';
import { buildVariant, resolveVariant, type Variant, type WeightSource } from '../registry/index.js';
import { storeRoot } from '../store/index.js';
import { assignWeights, disposeWeights, groupByLayer, type AssignReport } from './assign.js';
import { extractNsfwjsModel } from './nsfwjs.js';
import { readWeights } from './tfjs.js';

export interface PretrainedOptions {
  includeTop: boolean;
  /** `pretrained` loads the variant's weights; `random` keeps the builder's initialisation. */
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  store?: string;
  /** Seed of the initialisation when `weights` is `random`. */
  seed?: number;
}

export interface Pretrained {
  model: LayersModel;
  variant: Variant;
  source: WeightSource | null;
  report: AssignReport | null;
}

/** Weight sources that work without a network, in preference order. */
function pickSource(variant: Variant, includeTop: boolean): WeightSource | undefined {
  const usable = variant.weights.filter((w) => w.includeTop || !includeTop);
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
  const source = pickSource(variant, options.includeTop);
  if (source === undefined) {
    model.dispose();
    throw new WeightsError(`Model '${name}' has no weight source ${options.includeTop ? 'with' : 'without'} its top.`);
  }
  try {
    const report = await loadSource(tf, model, source, options.store ?? storeRoot());
    return { model, variant, source, report };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

async function loadSource(tf: Tf, model: LayersModel, source: WeightSource, store: string): Promise<AssignReport> {
  if (source.kind === 'nsfwjs') {
    const modelJson = await extractNsfwjsModel(store, source.model);
    const weights = groupByLayer(await readWeights(tf, modelJson));
    try {
      return assignWeights(model, weights, { source: modelJson });
    } finally {
      disposeWeights(weights);
    }
  }
  const { loadKerasWeights } = await import('./keras.js');
  return loadKerasWeights(tf, model, source, store);
}
