// The training loss: Keras's categorical cross-entropy of clipped probabilities, with label smoothing and class
// weights; or, for several labels per image, Keras's binary cross-entropy of clipped sigmoid outputs with per-label
// positive weights (PyTorch's pos_weight). The ONNX train step writes the same losses as graph nodes
// (src/onnx/train-step.ts); `lossOfImage` is the same per-image loss for evaluation.
import { EPSILON } from '../backend/epsilon.js';
import type { Tensor, Tf } from '../backend/index.js';
import { argmax } from '../util/arrays.js';

/** Several labels per image: what the labels of a batch stand for, and how positives weigh. */
export interface MultiLabelLoss {
  /** Row-major [sets, classes] 0/1 targets: row `s` is label set `s` (an image's `label` is its set's number). */
  targets: Float32Array;
  /** Weight of each label's positive term ((negatives / positives) on the training split with --class-weight balanced), or null. */
  posWeights: number[] | null;
}

/** What the training loss adds to plain cross-entropy. */
export interface LossConfig {
  /** Keras's label_smoothing: targets become (1 - s) * onehot + s / classes (multi-label: (1 - s) * t + s / 2). */
  labelSmoothing: number;
  /** Per-class weights of each image's loss (Keras's class_weight), or null; single-label only. */
  classWeights: number[] | null;
  /** Several labels per image (sigmoid outputs, binary cross-entropy), or null for one (softmax, cross-entropy). */
  multiLabel?: MultiLabelLoss | null;
  /** Mixup and CutMix: every batch comes with soft targets (smoothing applied) that the loss uses instead of labels. */
  softTargets?: boolean;
}

/**
 * The training loss of a batch as Keras computes it: smoothed targets, each image's cross-entropy times its class
 * weight (multi-label: the mean over labels of each label's binary cross-entropy), summed and divided by the batch size.
 */
export function trainingLoss(tf: Tf, probs: Tensor, labels: Tensor, classes: number, loss: LossConfig, targets?: Float32Array): Tensor {
  return tf.tidy(() => {
    const clipped = tf.clipByValue(probs, EPSILON, 1 - EPSILON);
    // Soft targets (a mixed batch): the cross-entropy of its rows, smoothing already in them.
    if (targets) return tf.mean(tf.neg(tf.sum(tf.mul(tf.tensor2d(targets, [targets.length / classes, classes]), tf.log(clipped)), -1)));
    if (loss.multiLabel) {
      let target = tf.gather(tf.tensor2d(loss.multiLabel.targets, [loss.multiLabel.targets.length / classes, classes]), labels);
      if (loss.labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - loss.labelSmoothing), loss.labelSmoothing / 2);
      let positive = tf.mul(target, tf.log(clipped));
      if (loss.multiLabel.posWeights) positive = tf.mul(positive, tf.tensor1d(loss.multiLabel.posWeights));
      const negative = tf.mul(tf.sub(1, target), tf.log(tf.sub(1, clipped)));
      return tf.mean(tf.neg(tf.mean(tf.add(positive, negative), -1)));
    }
    let target = tf.oneHot(labels, classes).toFloat();
    if (loss.labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - loss.labelSmoothing), loss.labelSmoothing / classes);
    let perImage = tf.neg(tf.sum(tf.mul(target, tf.log(clipped)), -1));
    if (loss.classWeights) perImage = tf.mul(perImage, tf.gather(tf.tensor1d(loss.classWeights), labels));
    return tf.mean(perImage);
  });
}

/**
 * The images of a batch the model gets right: the top class is the label, or (multi-label) every label's output is on
 * its side of 0.5 (subset accuracy).
 */
export function trainingHits(tf: Tf, probs: Tensor, labels: Tensor, classes: number, loss: Pick<LossConfig, 'multiLabel'>): Tensor {
  return tf.tidy(() => {
    if (!loss.multiLabel) return tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), labels), 'float32'));
    const target = tf.gather(tf.tensor2d(loss.multiLabel.targets, [loss.multiLabel.targets.length / classes, classes]), labels);
    const wrong = tf.sum(tf.abs(tf.sub(tf.cast(tf.greater(probs, 0.5), 'float32'), target)), -1);
    return tf.sum(tf.cast(tf.equal(wrong, 0), 'float32'));
  });
}

/**
 * One image's loss in inference (no smoothing, no weights), from its `k` probabilities at `offset`: cross-entropy of
 * its class, or the mean binary cross-entropy of its label set's row of `targets`.
 */
export function lossOfImage(probs: ArrayLike<number>, offset: number, k: number, label: number, targets: Float32Array | null): number {
  const clip = (p: number) => Math.min(Math.max(p, EPSILON), 1 - EPSILON);
  if (targets === null) return -Math.log(clip(probs[offset + label]!));
  let sum = 0;
  for (let c = 0; c < k; c++) {
    const p = clip(probs[offset + c]!);
    const t = targets[label * k + c]!;
    sum -= t * Math.log(p) + (1 - t) * Math.log(1 - p);
  }
  return sum / k;
}

/** Whether an image is right: its top class is its label, or (multi-label) all its outputs are on the targets' side of 0.5. */
export function isHit(probs: ArrayLike<number>, offset: number, k: number, label: number, targets: Float32Array | null): boolean {
  if (targets === null) return argmax(probs, offset, k) === label;
  for (let c = 0; c < k; c++) if (probs[offset + c]! > 0.5 !== targets[label * k + c]! > 0.5) return false;
  return true;
}

/** The 0/1 target rows of label sets over `classes` classes: what `MultiLabelLoss.targets` holds. */
export function targetRows(sets: readonly number[][], classes: number): Float32Array {
  const out = new Float32Array(sets.length * classes);
  sets.forEach((set, s) => set.forEach((c) => (out[s * classes + c] = 1)));
  return out;
}

/**
 * `--class-weight balanced` for several labels per image: each label's positives weigh (negatives / positives) over
 * the training images, as PyTorch's BCEWithLogitsLoss pos_weight is advised to be set; 1 for a label with no positives.
 */
export function positiveWeights(trainLabels: readonly number[], sets: readonly number[][], classes: number): number[] {
  const positives = new Array<number>(classes).fill(0);
  for (const s of trainLabels) for (const c of sets[s]!) positives[c]!++;
  return positives.map((p) => (p > 0 ? (trainLabels.length - p) / p : 1));
}

/** The 0/1 target rows of images whose labels number the label sets of `targets` (row-major [images, classes]). */
export function imageTargets(targets: Float32Array, labels: readonly number[], classes: number): Float32Array {
  const out = new Float32Array(labels.length * classes);
  labels.forEach((s, i) => out.set(targets.subarray(s * classes, (s + 1) * classes), i * classes));
  return out;
}
