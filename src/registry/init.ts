// Seeded weight initialisation with Keras's defaults, so a run with a given seed starts from the same weights.
import type { LayersModel, Tf } from '../backend/index.js';
import { mixSeed } from '../util/random.js';

/**
 * Re-initialises every weight of `model` from `seed`: kernels glorot-uniform (Keras's default for Conv2D,
 * DepthwiseConv2D and Dense), biases and beta and moving means zero, gamma and moving variances one.
 */
export function initializeWeights(tf: Tf, model: LayersModel, seed: number, onlyLayers?: ReadonlySet<string>): void {
  let index = 0;
  for (const layer of model.layers) {
    if (layer.weights.length === 0 || (onlyLayers && !onlyLayers.has(layer.name))) continue;
    const values = layer.weights.map((w) => {
      const shape = w.shape as number[];
      const kind = w.originalName.split('/').pop() ?? '';
      index++;
      if (kind === 'gamma' || kind === 'moving_variance') return tf.ones(shape);
      if (!/kernel/.test(kind)) return tf.zeros(shape);
      const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
      const fanIn = (shape[shape.length - 2] ?? 1) * receptive;
      const fanOut = (shape[shape.length - 1] ?? 1) * receptive;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      return tf.randomUniform(shape, -limit, limit, 'float32', mixSeed(seed, index));
    });
    layer.setWeights(values);
    tf.dispose(values);
  }
}
