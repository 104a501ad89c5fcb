// Temperature scaling after training, on the validation split, folded into the classifier.
import type { FrozenPart, KeptOutputs } from '../frozen/part.js';
import { fitTemperature, temper, temperatureDecision } from '../metrics/calibration.js';
import { computeMetrics, nonFiniteRows } from '../metrics/classification.js';
import { tuneThresholds } from '../metrics/multilabel.js';
import { imageTargets, targetRows } from '../model/loss.js';
import type { Calibration } from '../report/schema.js';
import { argmax, concatFloat32 } from '../util/arrays.js';
import { notice } from '../util/notice.js';
import type { Run } from './types.js';

/**
 * Temperature scaling on the validation split, folded into the classifier: softmax(z / T) is softmax of the last
 * Dense layer with its kernel and bias divided by T, so every consumer of the saved model (tfjs, model.onnx, tl
 * predict and eval) gets calibrated probabilities with nothing to apply. Predictions (the argmax) do not change.
 */
export async function calibrate(run: Run, frozen: FrozenPart): Promise<Omit<Calibration, 'test'> | null> {
  const { tf, dataset, options } = run;
  const kept: KeptOutputs = { probs: [], labels: [], paths: [] };
  await frozen.evaluate(dataset.splits.val, options.batchSize, undefined, kept);
  const probs = concatFloat32(kept.probs);
  const k = dataset.classes.length;
  if (nonFiniteRows(probs, k) > 0) {
    notice('not calibrated: the model gives NaN or infinite probabilities on the validation split');
    return null;
  }
  const fit = fitTemperature(probs, kept.labels, k);
  const classifier = run.full.layers.at(-1)!;
  if (classifier.getClassName() !== 'Dense' || (classifier.getConfig() as { activation?: string }).activation !== 'softmax') {
    notice(`not calibrated: the model's last layer '${classifier.name}' is not a softmax Dense layer`);
    return null;
  }
  const before = computeMetrics(probs, kept.labels, dataset.classes);
  const after = computeMetrics(temper(probs, k, fit.temperature), kept.labels, dataset.classes);
  const val = { logLossBefore: before.logLoss, logLossAfter: after.logLoss, eceBefore: before.ece, eceAfter: after.ece };
  const errors = kept.labels.filter((label, i) => argmax(probs, i * k, k) !== label).length;
  const decision = temperatureDecision({ fitted: fit.temperature, images: kept.labels.length, errors, ...val });
  if (!decision.applied) {
    notice(`not calibrated: ${decision.reason}`);
    return { temperature: 1, fitted: fit.temperature, ...decision, val };
  }
  tf.tidy(() => classifier.weights.forEach((w) => w.write(tf.div(w.read(), fit.temperature))));
  return { temperature: fit.temperature, fitted: fit.temperature, ...decision, val };
}

/**
 * Several labels per image: each label's threshold, tuned for F1 on the validation split (0.5 without one, or for a
 * label no validation image has). Saved with the model; predictions and the test metrics use them.
 */
export async function tuneRunThresholds(run: Run, frozen: FrozenPart): Promise<number[]> {
  const { dataset, options } = run;
  const k = dataset.classes.length;
  if (dataset.splits.val.length === 0) {
    notice('every label\'s threshold is 0.5: there is no validation split to tune them on');
    return new Array<number>(k).fill(0.5);
  }
  const kept: KeptOutputs = { probs: [], labels: [], paths: [] };
  await frozen.evaluate(dataset.splits.val, options.batchSize, undefined, kept);
  const probs = concatFloat32(kept.probs);
  if (nonFiniteRows(probs, k) > 0) {
    notice('every label\'s threshold is 0.5: the model gives NaN or infinite outputs on the validation split');
    return new Array<number>(k).fill(0.5);
  }
  return tuneThresholds(probs, imageTargets(targetRows(dataset.labelSets!, k), kept.labels, k), k);
}
