// Model set-up shared by tests: seeded random weights with BatchNormalization statistics worth testing.
import type { LayersModel, Tf } from '../../src/backend/index.js';
import { initializeWeights } from '../../src/registry/init.js';

/** Seeded random weights, with BatchNormalization statistics away from 0/1 so that they matter. */
export function randomize(tf: Tf, model: LayersModel, seed: number): void {
  initializeWeights(tf, model, seed);
  model.layers.forEach((l, k) => {
    if (l.getClassName() !== 'BatchNormalization') return;
    const values = l.weights.map((w, i) => tf.tidy(() => (/variance/.test(w.originalName) ? tf.randomUniform(w.shape as number[], 0.5, 2, 'float32', seed + k * 7 + i) : tf.randomNormal(w.shape as number[], 0, 0.3, 'float32', seed + k * 7 + i))));
    l.setWeights(values);
    tf.dispose(values);
  });
}
