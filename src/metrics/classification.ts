// Classification metrics from predicted probabilities, with scikit-learn's conventions.
import { TlError } from '../errors.js';

export interface ClassMetrics {
  name: string;
  precision: number;
  recall: number;
  f1: number;
  /** Images of this class. */
  support: number;
  /** Images predicted as this class. */
  predicted: number;
}

export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  /** Mean top-1 probability in the bin (null when empty). */
  confidence: number | null;
  accuracy: number | null;
}

export interface Mistake {
  path: string;
  true: string;
  predicted: string;
  probability: number;
}

export interface Metrics {
  count: number;
  accuracy: number;
  /** Top-5 accuracy, when there are more than 5 classes. */
  top5: number | null;
  logLoss: number;
  /** Expected calibration error over `reliability`'s equal-width bins of the top-1 probability. */
  ece: number;
  reliability: ReliabilityBin[];
  perClass: ClassMetrics[];
  /** Unweighted mean over the classes present in the labels or the predictions (scikit-learn's default). */
  macro: { precision: number; recall: number; f1: number };
  /** Mean weighted by support. */
  weighted: { precision: number; recall: number; f1: number };
  /** confusion[true][predicted]. */
  confusion: number[][];
  /** The most confident wrong predictions, most confident first. */
  mistakes: Mistake[];
}

/** Probabilities are clipped like scikit-learn's log_loss for float32 input. */
const EPS = 1.1920929e-7;

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);

/** Rows (images) of `probs` with a NaN or infinite value. */
export function nonFiniteRows(probs: ArrayLike<number>, classes: number): number {
  let rows = 0;
  for (let i = 0; i < probs.length; i += classes) {
    for (let c = 0; c < classes; c++) {
      if (!Number.isFinite(probs[i + c]!)) {
        rows++;
        break;
      }
    }
  }
  return rows;
}

/**
 * Metrics of `probs` (n x classes, row-major) against `labels`; `paths` name the images for the mistakes list.
 * Zero divisions count as 0, as scikit-learn's `zero_division` default does.
 */
export function computeMetrics(probs: Float32Array | number[], labels: ArrayLike<number>, classes: readonly string[], options: { paths?: readonly string[]; bins?: number; mistakes?: number } = {}): Metrics {
  const k = classes.length;
  const n = labels.length;
  if (probs.length !== n * k) throw new Error(`computeMetrics: ${probs.length} probabilities for ${n} images x ${k} classes`);
  const broken = nonFiniteRows(probs, k);
  if (broken > 0) throw new TlError('E_NONFINITE', `The model's outputs are not finite (NaN or infinite) for ${broken} of ${n} images, so there are no metrics: its weights are broken (a diverged run, or weights that do not fit the architecture).`);
  const bins = options.bins ?? 15;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  const predicted = new Int32Array(n);
  const confidence = new Float64Array(n);
  let top5 = 0;
  let logLoss = 0;
  for (let i = 0; i < n; i++) {
    const row = probs.slice(i * k, (i + 1) * k) as ArrayLike<number>;
    let best = 0;
    let sum = 0;
    for (let c = 0; c < k; c++) {
      sum += row[c]!;
      if (row[c]! > row[best]!) best = c;
    }
    predicted[i] = best;
    confidence[i] = row[best]!;
    const truth = labels[i]!;
    confusion[truth]![best]!++;
    const p = Math.min(1 - EPS, Math.max(EPS, row[truth]! / (sum || 1)));
    logLoss -= Math.log(p);
    let above = 0;
    for (let c = 0; c < k; c++) if (row[c]! > row[truth]!) above++;
    if (above < 5) top5++;
  }
  const perClass: ClassMetrics[] = classes.map((name, c) => {
    const tp = confusion[c]![c]!;
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const pred = confusion.reduce((a, row) => a + row[c]!, 0);
    const precision = ratio(tp, pred);
    const recall = ratio(tp, support);
    return { name, precision, recall, f1: ratio(2 * precision * recall, precision + recall), support, predicted: pred };
  });
  const present = perClass.filter((m) => m.support > 0 || m.predicted > 0);
  const mean = (key: 'precision' | 'recall' | 'f1') => ratio(present.reduce((a, m) => a + m[key], 0), present.length);
  const weightedMean = (key: 'precision' | 'recall' | 'f1') => ratio(perClass.reduce((a, m) => a + m[key] * m.support, 0), n);

  const reliability: ReliabilityBin[] = Array.from({ length: bins }, (_, b) => ({ lower: b / bins, upper: (b + 1) / bins, count: 0, confidence: 0, accuracy: 0 }));
  for (let i = 0; i < n; i++) {
    // Bins are (lower, upper]; a probability of exactly 0 goes to the first.
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(confidence[i]! * bins) - 1));
    const bin = reliability[b]!;
    bin.count++;
    bin.confidence! += confidence[i]!;
    bin.accuracy! += predicted[i] === labels[i] ? 1 : 0;
  }
  let ece = 0;
  for (const bin of reliability) {
    if (bin.count === 0) {
      bin.confidence = null;
      bin.accuracy = null;
      continue;
    }
    bin.confidence! /= bin.count;
    bin.accuracy! /= bin.count;
    ece += (bin.count / n) * Math.abs(bin.accuracy! - bin.confidence!);
  }
  const wrong = Array.from({ length: n }, (_, i) => i).filter((i) => predicted[i] !== labels[i]);
  wrong.sort((a, b) => confidence[b]! - confidence[a]!);
  const mistakes = wrong.slice(0, options.mistakes ?? 12).map((i) => ({ path: options.paths?.[i] ?? String(i), true: classes[labels[i]!]!, predicted: classes[predicted[i]!]!, probability: confidence[i]! }));
  const correct = perClass.reduce((a, m, c) => a + confusion[c]![c]!, 0);
  return {
    count: n,
    accuracy: ratio(correct, n),
    top5: k > 5 ? ratio(top5, n) : null,
    logLoss: ratio(logLoss, n),
    ece,
    reliability,
    perClass,
    macro: { precision: mean('precision'), recall: mean('recall'), f1: mean('f1') },
    weighted: { precision: weightedMean('precision'), recall: weightedMean('recall'), f1: weightedMean('f1') },
    confusion,
    mistakes,
  };
}
