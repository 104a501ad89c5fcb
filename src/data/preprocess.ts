// Maps uint8 RGB pixels to a model's input range, per the registry's preprocessing mode.
import type { Tensor, Tf } from '../backend/index.js';
import type { PreprocessMode } from '../registry/index.js';

export const PREPROCESS_MODES: readonly PreprocessMode[] = ['caffe', 'tf', 'torch', 'raw01', 'none'];

/** ImageNet channel means as Keras's `caffe` mode subtracts them, in BGR order. */
const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];
const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

/**
 * Preprocesses a [N,H,W,3] batch of 0..255 RGB values: `caffe` (BGR minus ImageNet means), `tf` ([-1, 1]),
 * `torch` (/255 then ImageNet mean/std), `raw01` ([0, 1]) or `none` (0..255, for models that rescale themselves).
 */
export function preprocess(tf: Tf, pixels: Tensor, mode: PreprocessMode): Tensor {
  return tf.tidy(() => {
    const x = tf.cast(pixels, 'float32');
    switch (mode) {
      case 'caffe':
        return tf.sub(tf.reverse(x, -1), tf.tensor1d(CAFFE_MEAN_BGR));
      case 'tf':
        return tf.sub(tf.div(x, 127.5), 1);
      case 'torch':
        return tf.div(tf.sub(tf.div(x, 255), tf.tensor1d(TORCH_MEAN)), tf.tensor1d(TORCH_STD));
      case 'raw01':
        return tf.div(x, 255);
      case 'none':
        return x;
    }
  });
}

const f = Math.fround;
const CAFFE32 = CAFFE_MEAN_BGR.map(f);
const TORCH_MEAN32 = TORCH_MEAN.map(f);
const TORCH_STD32 = TORCH_STD.map(f);

/** `preprocess` on a plain array (for engines other than TensorFlow.js), with the same float32 steps. */
export function preprocessPixels(pixels: Uint8Array, mode: PreprocessMode): Float32Array {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i += 3) {
    for (let c = 0; c < 3; c++) {
      const x = pixels[i + c]!;
      switch (mode) {
        case 'caffe':
          out[i + c] = f(pixels[i + 2 - c]! - CAFFE32[c]!);
          break;
        case 'tf':
          out[i + c] = f(f(x / 127.5) - 1);
          break;
        case 'torch':
          out[i + c] = f(f(f(x / 255) - TORCH_MEAN32[c]!) / TORCH_STD32[c]!);
          break;
        case 'raw01':
          out[i + c] = f(x / 255);
          break;
        case 'none':
          out[i + c] = x;
          break;
      }
    }
  }
  return out;
}
