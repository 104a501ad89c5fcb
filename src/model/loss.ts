// The training loss: Keras's categorical cross-entropy of clipped probabilities, with label smoothing and class
// weights (the ONNX train step writes the same loss as graph nodes: src/onnx/train-step.ts).
import { EPSILON } from '../backend/epsilon.js';
import type { Tensor, Tf } from '../backend/index.js';

/** What the training loss adds to plain cross-entropy. */
export interface LossConfig {
  /** Keras's label_smoothing: targets become (1 - s) * onehot + s / classes. */
  labelSmoothing: number;
  /** Per-class weights of each image's loss (Keras's class_weight), or null. */
  classWeights: number[] | null;
}

/**
 * The training loss of a batch as Keras computes it: smoothed targets, each image's cross-entropy times its class
 * weight, summed and divided by the batch size.
 */
export function trainingLoss(tf: Tf, probs: Tensor, labels: Tensor, classes: number, loss: LossConfig): Tensor {
  return tf.tidy(() => {
    let target = tf.oneHot(labels, classes).toFloat();
    if (loss.labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - loss.labelSmoothing), loss.labelSmoothing / classes);
    let perImage = tf.neg(tf.sum(tf.mul(target, tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON))), -1));
    if (loss.classWeights) perImage = tf.mul(perImage, tf.gather(tf.tensor1d(loss.classWeights), labels));
    return tf.mean(perImage);
  });
}
