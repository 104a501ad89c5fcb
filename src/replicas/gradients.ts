// The gradient of one slice of a batch through the tail, shared by the main thread and the worker replicas.
import type { LayersModel, Tensor, Tf } from '../backend/index.js';
import { mixSeed } from '../util/random.js';
import { trainingHits, trainingLoss, type LossConfig } from '../model/loss.js';

export interface SliceGradients {
  /** One gradient per trainable weight of the tail, in `trainableWeights` order. */
  grads: Tensor[];
  /** The slice's summed loss (mean loss x count). */
  lossSum: number;
  correct: number;
}

/** Seeds every Dropout layer of `model` (null: unseeded), so that masks repeat with the run's seed. */
export function seedDropout(model: LayersModel, seed: number | null): void {
  model.layers.forEach((layer, i) => {
    if (layer.getClassName() === 'Dropout') (layer as unknown as { seed: number | undefined }).seed = seed === null ? undefined : mixSeed(seed, i);
  });
}

/** How a slice is trained: micro-batches, its share of the batch, the loss and the dropout seed. */
export interface SliceSpec {
  classes: number;
  accumulate: number;
  /** The slice's share of the whole batch, so slices' gradients add up to the batch's. */
  scale: number;
  loss: LossConfig;
  /** Seeds the dropout masks of this slice's micro-batches; null leaves them unseeded. */
  dropoutSeed: number | null;
}

/** Gradients of `scale` x (mean loss over the slice), in `accumulate` micro-batches. */
export async function sliceGradients(tf: Tf, tail: LayersModel, inputs: Tensor[], labels: Int32Array, spec: SliceSpec, targets?: Float32Array): Promise<SliceGradients> {
  const { classes, accumulate, scale } = spec;
  const n = labels.length;
  const vars = tail.trainableWeights.map((w) => w.read() as ReturnType<Tf['variable']>);
  const micro = Math.ceil(n / Math.max(1, accumulate));
  let summed: Tensor[] | null = null;
  let lossSum = 0;
  let correct = 0;
  try {
    for (let start = 0; start < n; start += micro) {
      const count = Math.min(micro, n - start);
      const y = labels.subarray(start, start + count);
      let hits: Tensor | null = null;
      seedDropout(tail, spec.dropoutSeed === null ? null : mixSeed(spec.dropoutSeed, start));
      const { value, grads } = tf.variableGrads(() => {
        const slice = inputs.map((t) => (start === 0 && count === n ? t : tf.slice(t, start, count)));
        const probs = tail.apply(slice.length === 1 ? slice[0]! : slice, { training: true }) as Tensor;
        const labelTensor = tf.tensor1d(y, 'int32');
        hits = tf.keep(trainingHits(tf, probs, labelTensor, classes, spec.loss));
        const soft = targets?.subarray(start * classes, (start + count) * classes);
        return tf.mul(trainingLoss(tf, probs, labelTensor, classes, spec.loss, soft), (count / n) * scale) as ReturnType<Tf['scalar']>;
      }, vars);
      lossSum += ((await value.data())[0]! / scale) * n;
      correct += (await (hits as Tensor | null)!.data())[0]!;
      tf.dispose([value, hits!]);
      const ordered = vars.map((v) => grads[v.name]!);
      if (summed === null) summed = ordered;
      else {
        const previous: Tensor[] = summed;
        summed = ordered.map((g, i) => tf.add(previous[i]!, g));
        tf.dispose([...previous, ...ordered]);
      }
    }
  } catch (err) {
    if (summed) tf.dispose(summed);
    throw err;
  }
  return { grads: summed ?? [], lossSum, correct };
}
