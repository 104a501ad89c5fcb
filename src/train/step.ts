// The gradient of one shard of a batch through the tail, shared by the main thread and the worker replicas.
import type { LayersModel, Tensor, Tf } from '../backend/index.js';

export interface ShardGradients {
  /** One gradient per trainable weight of the tail, in `trainableWeights` order. */
  grads: Tensor[];
  /** The shard's summed loss (mean loss x count). */
  lossSum: number;
  correct: number;
}

/** Mean categorical cross-entropy of probabilities, clipped as Keras clips them. */
export function crossEntropy(tf: Tf, probs: Tensor, oneHot: Tensor): Tensor {
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(tf.clipByValue(probs, 1e-7, 1 - 1e-7))), -1)));
}

/**
 * Gradients of `scale` x (mean loss over the shard), in `accumulate` micro-batches; `scale` is the shard's
 * share of the whole batch, so shards' gradients add up to the batch's.
 */
export async function shardGradients(tf: Tf, tail: LayersModel, inputs: Tensor[], labels: Int32Array, classes: number, accumulate: number, scale: number): Promise<ShardGradients> {
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
      const { value, grads } = tf.variableGrads(() => {
        const slice = inputs.map((t) => (start === 0 && count === n ? t : tf.slice(t, start, count)));
        const probs = tail.apply(slice.length === 1 ? slice[0]! : slice, { training: true }) as Tensor;
        const labelTensor = tf.tensor1d(y, 'int32');
        hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), labelTensor), 'float32')));
        return tf.mul(crossEntropy(tf, probs, tf.oneHot(labelTensor, classes)), (count / n) * scale) as ReturnType<Tf['scalar']>;
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
