// Precise BatchNorm statistics (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021; fvcore's PreciseBN): the
// moving averages of layers that train lag far behind their weights when momentum is high (MobileNetV2's is 0.999),
// so before each validation they are recomputed as the plain mean over a pass of training batches.
import type { Layer, LayersModel, Tensor, Tf } from '../backend/index.js';
import type { Cut } from '../model/index.js';
import type { Dataset, ImageItem } from '../data/index.js';
import { mixSeed } from '../util/random.js';
import type { FrozenPart } from '../frozen/part.js';

/** Training images the statistics are averaged over (fvcore's default is 200 batches; a few hundred images suffice). */
export const PRECISE_BN_IMAGES = 512;

/** BatchNormalization layers of `model` that train (the ones whose statistics move). */
export function trainingBatchNorms(model: LayersModel): Layer[] {
  return model.layers.filter((l) => l.getClassName() === 'BatchNormalization' && l.trainable);
}

/** Sets every BatchNormalization layer's momentum (what `--bn-momentum` does). */
export function setBatchNormMomentum(model: LayersModel, momentum: number): void {
  for (const l of model.layers) if (l.getClassName() === 'BatchNormalization') (l as unknown as { momentum: number }).momentum = momentum;
}

/** A fixed sample of the training split (the same images every epoch for a seed). */
export function preciseBnSample(items: readonly ImageItem[], seed: number): ImageItem[] {
  if (items.length <= PRECISE_BN_IMAGES) return [...items];
  const keyed = items.map((item, i) => ({ item, key: mixSeed(seed, i, 13) }));
  keyed.sort((a, b) => a.key - b.key);
  return keyed.slice(0, PRECISE_BN_IMAGES).map((k) => k.item);
}

/**
 * Replaces the moving mean and variance of every training BatchNormalization layer of the cut's tail with their
 * average over `items` (batch k enters with momentum k/(k+1), which makes the running average the plain mean).
 * Returns the number of layers updated.
 */
export async function recomputeBatchNorm(tf: Tf, cut: Cut, frozen: FrozenPart, dataset: Dataset, items: ImageItem[], batchSize: number): Promise<number> {
  const layers = trainingBatchNorms(cut.tail);
  if (layers.length === 0 || items.length === 0) return 0;
  if (frozen.tail) {
    // On ONNX Runtime: the batch statistics of each batch, averaged (what the momentum schedule below amounts to),
    // without TensorFlow.js's training-mode pass (which grows its wasm heap by the tail's activations).
    const tail = frozen.tail;
    tail.refresh();
    const sums = new Map<string, Float64Array>();
    let k = 0;
    for await (const batch of dataset.source.batches(items, { batchSize, needPixels: frozen.needsPixels })) {
      const stats = await tail.batchStatistics(await frozen.boundary(batch), batch.items.length);
      for (const [name, values] of stats) {
        const sum = sums.get(name) ?? new Float64Array(values.length);
        values.forEach((v, i) => (sum[i] = sum[i]! + v));
        sums.set(name, sum);
      }
      k++;
    }
    const byName = new Map(cut.tail.weights.map((w) => [w.originalName, w]));
    tf.tidy(() => {
      for (const [name, sum] of sums) byName.get(name)!.write(tf.tensor(Float32Array.from(sum, (v) => v / k), byName.get(name)!.shape as number[]));
    });
    return layers.length;
  }
  const saved = layers.map((l) => (l as unknown as { momentum: number }).momentum);
  let k = 0;
  try {
    for await (const batch of dataset.source.batches(items, { batchSize, needPixels: frozen.needsPixels })) {
      for (const l of layers) (l as unknown as { momentum: number }).momentum = k / (k + 1);
      const arrays = await frozen.boundary(batch);
      tf.tidy(() => {
        const inputs = cut.boundaryShapes.map((shape, b) => tf.tensor(arrays[b]!, [batch.items.length, ...shape]));
        cut.tail.apply(inputs.length === 1 ? inputs[0]! : inputs, { training: true }) as Tensor;
      });
      k++;
    }
  } finally {
    layers.forEach((l, i) => ((l as unknown as { momentum: number }).momentum = saved[i]!));
  }
  return layers.length;
}
