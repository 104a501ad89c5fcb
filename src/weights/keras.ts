// Keras HDF5 weights for registry variants: fetched into the store, hash-checked, then assigned by layer name.
import type { LayersModel, Tf } from '../backend/index.js';
import { WeightsError } from '../errors.js';
import type { WeightSource } from '../registry/index.js';
import type { AssignReport } from './assign.js';

/** Loads a variant's Keras .h5 weights (from the store, downloading when missing). */
export async function loadKerasWeights(_tf: Tf, _model: LayersModel, source: WeightSource & { kind: 'keras-h5' }, _store: string): Promise<AssignReport> {
  throw new WeightsError(`Keras weights (${source.url}) are not supported yet.`);
}
