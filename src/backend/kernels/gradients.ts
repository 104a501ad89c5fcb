// Gradient definitions that replace TensorFlow.js's where its version is needlessly slow.
import type * as tfTypes from '@tensorflow/tfjs';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;

let registered = false;

/**
 * FusedBatchNorm's gradient, identical in value to tfjs-core's but broadcasting per-channel factors instead of
 * tiling them to the activation's full shape (tfjs's `tile` makes the backward pass of every BatchNormalization
 * layer copy a tensor as large as its input).
 */
export function registerGradientFixes(tf: Tf): void {
  if (registered) return;
  tf.registerGradient({
    kernelName: 'FusedBatchNorm',
    inputsToSave: ['x', 'mean', 'variance', 'scale'],
    gradFunc: (dy, saved, attrs) => {
      const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const epsilon = (attrs as { varianceEpsilon: number }).varianceEpsilon;
      const g = dy as Tensor;
      const scaleValue: Tensor | number = scale ?? 1;
      const reductionAxes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
      const reduce = (t: Tensor) => tf.reshape(mean.rank === 1 ? tf.sum(t, reductionAxes) : t, mean.shape);
      const rsqrt = tf.rsqrt(tf.add(variance, tf.scalar(epsilon)));
      const dyTimesScale = tf.mul(g, scaleValue);
      return {
        x: () => tf.mul(g, tf.mul(rsqrt, scaleValue)),
        mean: () => reduce(tf.mul(tf.neg(rsqrt), dyTimesScale)),
        variance: () => reduce(tf.mul(tf.mul(tf.mul(tf.scalar(-0.5), tf.pow(rsqrt, 3)), tf.sub(x, mean)), dyTimesScale)),
        scale: () => reduce(tf.mul(g, tf.mul(tf.sub(x, mean), rsqrt))),
        offset: () => reduce(g),
      };
    },
  });
  tf.registerGradient({
    kernelName: 'ClipByValue',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [Tensor];
      const { clipValueMin, clipValueMax } = attrs as { clipValueMin: number; clipValueMax: number };
      // The same mask as tfjs's min <= x <= max, in two passes instead of five (ReLU6 layers are clips).
      return { x: () => tf.mul(dy as Tensor, tf.cast(tf.equal(tf.clipByValue(x, clipValueMin, clipValueMax), x), 'float32')) };
    },
  });
  registered = true;
}
