// Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels",
// JAIR 2021; cleanlab's `filter_by='confident_learning'`) on out-of-sample probabilities: a class's threshold is the
// mean probability of that class over the images labelled with it; an image counts toward the likeliest class whose
// probability passes its threshold, and it is an issue when that class is not its given label. `tl data --suspects`
// gives it out-of-fold probabilities of linear probes; a fine-tune's report, its model's probabilities on the test split.

/**
 * Confident learning on out-of-fold probabilities `probs` (rows of `classes`) and given `labels`: the per-class
 * thresholds, the confident joint, and the rows it counts off the diagonal with the class they count toward.
 */
export function confidentLearning(probs: Float32Array, labels: Int32Array, classes: number): { thresholds: number[]; joint: number[][]; issues: { row: number; likely: number }[] } {
  const n = labels.length;
  const sums = new Float64Array(classes);
  const counts = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    sums[labels[i]!] = sums[labels[i]!]! + probs[i * classes + labels[i]!]!;
    counts[labels[i]!] = counts[labels[i]!]! + 1;
  }
  const thresholds = Array.from(sums, (s, j) => (counts[j]! > 0 ? s / counts[j]! : 1));
  const joint = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const issues: { row: number; likely: number }[] = [];
  for (let i = 0; i < n; i++) {
    let likely = -1;
    for (let j = 0; j < classes; j++) {
      const p = probs[i * classes + j]!;
      if (p >= thresholds[j]! && (likely < 0 || p > probs[i * classes + likely]!)) likely = j;
    }
    if (likely < 0) continue;
    joint[labels[i]!]![likely]!++;
    if (likely !== labels[i]) issues.push({ row: i, likely });
  }
  return { thresholds, joint, issues };
}

