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

/** The temperatures the search covers (1/T in [0.05, 20]). */
export const TEMPERATURE_RANGE = [0.05, 20] as const;

/** Fewer validation images than this cannot support a fitted temperature. */
export const MIN_CALIBRATION_IMAGES = 20;

export interface TemperatureDecision {
  applied: boolean;
  /** Why, in words (shown in the output and the report). */
  reason: string;
}

/**
 * Whether a fitted temperature is applied. It is not when the validation split is too small to support it, when no
 * validation image is misclassified (the log-loss then falls without bound as T falls: the fit says nothing), when
 * the fit sits at the edge of the search range, or when it would raise the validation ECE by more than 1/(2n) (n
 * validation images: ECE moves by up to 1/n when one image's confidence changes bins, so less is noise).
 */
export function temperatureDecision(v: { fitted: number; images: number; errors: number; logLossBefore: number; logLossAfter: number; eceBefore: number; eceAfter: number }): TemperatureDecision {
  const n = (x: number) => x.toFixed(4);
  const [lo, hi] = TEMPERATURE_RANGE;
  if (v.images < MIN_CALIBRATION_IMAGES) return { applied: false, reason: `the validation split has ${v.images} images; a temperature needs at least ${MIN_CALIBRATION_IMAGES}` };
  if (v.errors === 0) return { applied: false, reason: `no validation image is misclassified, so the validation log-loss falls without bound as the temperature falls and any fitted temperature would make every mistake near-certain` };
  if (v.fitted <= lo * 1.001 || v.fitted >= hi / 1.001) return { applied: false, reason: `the fitted temperature ${v.fitted.toFixed(3)} is at the edge of the search range [${lo}, ${hi}]` };
  if (v.eceAfter > v.eceBefore + 0.5 / v.images) return { applied: false, reason: `a temperature of ${v.fitted.toFixed(3)} would raise the validation ECE from ${n(v.eceBefore)} to ${n(v.eceAfter)} (its log-loss ${n(v.logLossBefore)} -> ${n(v.logLossAfter)})` };
  return { applied: true, reason: `it lowers the validation log-loss from ${n(v.logLossBefore)} to ${n(v.logLossAfter)} (ECE ${n(v.eceBefore)} -> ${n(v.eceAfter)}) on ${v.images} images with ${v.errors} mistake${v.errors === 1 ? '' : 's'}` };
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
  let lo = 1 / TEMPERATURE_RANGE[1];
  let hi = 1 / TEMPERATURE_RANGE[0];
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
