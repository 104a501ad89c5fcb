// Metrics of a classifier with several labels per image (sigmoid outputs), with scikit-learn's conventions: per-label
// precision, recall, F1 and average precision; micro and macro F1; mAP; subset accuracy; Hamming loss; and the
// per-label thresholds that maximise F1 on a validation split.

/** One label's metrics at its threshold. */
export interface LabelMetrics {
  name: string;
  /** The label is predicted where its probability is at least this. */
  threshold: number;
  precision: number;
  recall: number;
  f1: number;
  /** Average precision (scikit-learn's average_precision_score), null when the label has no positive image. */
  ap: number | null;
  /** Images that have the label. */
  support: number;
  /** Images predicted to have it. */
  predicted: number;
}

export interface MultiLabelMetrics {
  count: number;
  labels: LabelMetrics[];
  /** Over every (image, label) pair. */
  micro: { precision: number; recall: number; f1: number };
  /** Unweighted mean over the labels. */
  macro: { precision: number; recall: number; f1: number };
  /** Mean average precision over the labels that have a positive image. */
  mAP: number | null;
  /** Images whose predicted label set is exactly their own. */
  subsetAccuracy: number;
  /** Share of (image, label) pairs predicted wrong. */
  hammingLoss: number;
  /** Mean over images and labels of the binary cross-entropy (probabilities clipped as scikit-learn's log_loss). */
  logLoss: number;
}

const EPS = 1.1920929e-7;
const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
const f1Of = (tp: number, fp: number, fn: number) => ratio(2 * tp, 2 * tp + fp + fn);

/**
 * Average precision of `scores` against 0/1 `truth` (scikit-learn's average_precision_score): the sum over
 * thresholds, highest first and tied scores together, of precision times the recall gained. Null without positives.
 */
export function averagePrecision(scores: ArrayLike<number>, truth: ArrayLike<number>): number | null {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const positives = order.reduce((n, i) => n + (truth[i]! > 0.5 ? 1 : 0), 0);
  if (positives === 0) return null;
  let tp = 0;
  let seen = 0;
  let ap = 0;
  let lastRecall = 0;
  for (let i = 0; i < order.length; ) {
    const score = scores[order[i]!]!;
    while (i < order.length && scores[order[i]!]! === score) {
      tp += truth[order[i]!]! > 0.5 ? 1 : 0;
      seen++;
      i++;
    }
    const recall = tp / positives;
    ap += (recall - lastRecall) * (tp / seen);
    lastRecall = recall;
  }
  return ap;
}

/** Column `c` of row-major [n, k] values. */
function column(values: ArrayLike<number>, n: number, k: number, c: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = values[i * k + c]!;
  return out;
}

/**
 * Each label's threshold with the highest F1 on (`probs`, `truth`), both row-major [n, k]: halfway between the
 * lowest score predicted positive and the next one below (so near-ties do not flip); 0.5 for a label without a
 * positive image, where F1 says nothing.
 */
export function tuneThresholds(probs: ArrayLike<number>, truth: ArrayLike<number>, k: number): number[] {
  const n = Math.floor(probs.length / k);
  return Array.from({ length: k }, (_, c) => {
    const scores = column(probs, n, k, c);
    const labels = column(truth, n, k, c);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
    const positives = labels.reduce((s, v) => s + (v > 0.5 ? 1 : 0), 0);
    if (positives === 0) return 0.5;
    let tp = 0;
    let best = { f1: -1, threshold: 0.5 };
    for (let i = 0; i < n; ) {
      const score = scores[order[i]!]!;
      while (i < n && scores[order[i]!]! === score) tp += labels[order[i++]!]! > 0.5 ? 1 : 0;
      const f1 = f1Of(tp, i - tp, positives - tp);
      if (f1 > best.f1) best = { f1, threshold: i < n ? (score + scores[order[i]!]!) / 2 : score / 2 };
    }
    return best.threshold;
  });
}

/** The metrics of `probs` against 0/1 `truth` (both row-major [n, k]), each label predicted at its threshold. */
export function computeMultiLabelMetrics(probs: ArrayLike<number>, truth: ArrayLike<number>, classes: readonly string[], thresholds: readonly number[]): MultiLabelMetrics {
  const k = classes.length;
  const n = Math.floor(probs.length / k);
  let wrongPairs = 0;
  let exact = 0;
  let logLoss = 0;
  const tp = new Array<number>(k).fill(0);
  const fp = new Array<number>(k).fill(0);
  const fn = new Array<number>(k).fill(0);
  for (let i = 0; i < n; i++) {
    let wrong = 0;
    for (let c = 0; c < k; c++) {
      const p = probs[i * k + c]!;
      const t = truth[i * k + c]! > 0.5;
      const predicted = p >= thresholds[c]!;
      if (predicted && t) tp[c]!++;
      else if (predicted) fp[c]!++;
      else if (t) fn[c]!++;
      if (predicted !== t) wrong++;
      const q = Math.min(Math.max(p, EPS), 1 - EPS);
      logLoss -= t ? Math.log(q) : Math.log(1 - q);
    }
    wrongPairs += wrong;
    if (wrong === 0) exact++;
  }
  const labels: LabelMetrics[] = classes.map((name, c) => ({
    name,
    threshold: thresholds[c]!,
    precision: ratio(tp[c]!, tp[c]! + fp[c]!),
    recall: ratio(tp[c]!, tp[c]! + fn[c]!),
    f1: f1Of(tp[c]!, fp[c]!, fn[c]!),
    ap: averagePrecision(column(probs, n, k, c), column(truth, n, k, c)),
    support: tp[c]! + fn[c]!,
    predicted: tp[c]! + fp[c]!,
  }));
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const aps = labels.flatMap((l) => (l.ap === null ? [] : [l.ap]));
  const mean = (pick: (l: LabelMetrics) => number) => ratio(sum(labels.map(pick)), k);
  return {
    count: n,
    labels,
    micro: { precision: ratio(sum(tp), sum(tp) + sum(fp)), recall: ratio(sum(tp), sum(tp) + sum(fn)), f1: f1Of(sum(tp), sum(fp), sum(fn)) },
    macro: { precision: mean((l) => l.precision), recall: mean((l) => l.recall), f1: mean((l) => l.f1) },
    mAP: aps.length === 0 ? null : sum(aps) / aps.length,
    subsetAccuracy: ratio(exact, n),
    hammingLoss: ratio(wrongPairs, n * k),
    logLoss: ratio(logLoss, n * k),
  };
}
