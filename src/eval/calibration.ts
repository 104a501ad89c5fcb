// Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): one scalar T fitted on
// the validation split by minimising its log-loss; probabilities become softmax(logits / T). Accuracy is unchanged.

/** Log-probabilities below this are clipped (float32's smallest normal number): a softmax output of 0 carries no logit. */
const MIN_LOG = Math.log(1.1754944e-38);

/** softmax(logits / T) for rows of softmax probabilities: log p differs from the logits by a per-row constant. */
export function temper(probs: ArrayLike<number>, classes: number, temperature: number): Float32Array {
  const out = new Float32Array(probs.length);
  const row = new Float64Array(classes);
  for (let i = 0; i < probs.length; i += classes) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) {
      row[c] = Math.max(MIN_LOG, Math.log(probs[i + c]!)) / temperature;
      max = Math.max(max, row[c]!);
    }
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += (row[c] = Math.exp(row[c]! - max));
    for (let c = 0; c < classes; c++) out[i + c] = row[c]! / sum;
  }
  return out;
}

/** Mean negative log-likelihood of the labels under softmax(log p * beta), in float64. */
function nll(logp: Float64Array, labels: ArrayLike<number>, classes: number, beta: number): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logp[i * classes + c]! * beta);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logp[i * classes + c]! * beta - max);
    total += max + Math.log(sum) - logp[i * classes + labels[i]!]! * beta;
  }
  return total / Math.max(1, labels.length);
}

export interface TemperatureFit {
  temperature: number;
  /** Validation log-loss at T = 1 and at the fitted T. */
  logLossBefore: number;
  logLossAfter: number;
}

/**
 * The temperature that minimises the log-loss of `probs` (softmax outputs, `classes` per row) on `labels`. The
 * log-loss is convex in 1/T, so a golden-section search over 1/T in [0.05, 20] finds the minimum to 1e-7.
 */
export function fitTemperature(probs: ArrayLike<number>, labels: ArrayLike<number>, classes: number): TemperatureFit {
  const logp = Float64Array.from(probs, (p) => Math.max(MIN_LOG, Math.log(p)));
  const f = (beta: number) => nll(logp, labels, classes, beta);
  let lo = 0.05;
  let hi = 20;
  const g = (Math.sqrt(5) - 1) / 2;
  let a = hi - g * (hi - lo);
  let b = lo + g * (hi - lo);
  let fa = f(a);
  let fb = f(b);
  while (hi - lo > 1e-7) {
    if (fa < fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - g * (hi - lo);
      fa = f(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + g * (hi - lo);
      fb = f(b);
    }
  }
  const beta = (lo + hi) / 2;
  return { temperature: 1 / beta, logLossBefore: f(1), logLossAfter: f(beta) };
}
