// Optimizers, learning-rate schedules and decoupled weight decay for the trainable part.
import type { Tensor, Tf } from '../backend/index.js';

export const OPTIMIZERS = ['adam', 'sgd', 'rmsprop'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
export const SCHEDULES = ['constant', 'cosine', 'step', 'one-cycle'] as const;

/** fastai's `fit_one_cycle` defaults: the rate rises from lr/25 to lr over the first quarter, then falls to lr/1e5. */
export const ONE_CYCLE = { pctStart: 0.25, div: 25, divFinal: 1e5 } as const;

/** fastai's `sched_cos`: from `start` at p = 0 to `end` at p = 1 along half a cosine. */
function cosineBetween(start: number, end: number, p: number): number {
  return start + ((1 + Math.cos(Math.PI * (1 - p))) * (end - start)) / 2;
}
export type ScheduleName = (typeof SCHEDULES)[number];

export interface OptimizerConfig {
  optimizer: OptimizerName;
  /** SGD and RMSprop momentum. */
  momentum: number;
  nesterov: boolean;
}

export type Optimizer = ReturnType<Tf['train']['adam']> | ReturnType<Tf['train']['sgd']> | ReturnType<Tf['train']['momentum']> | ReturnType<Tf['train']['rmsprop']>;

/** A tfjs optimizer as configured (Keras defaults for betas, rho and epsilon). */
export function createOptimizer(tf: Tf, config: OptimizerConfig, lr: number): Optimizer {
  if (config.optimizer === 'adam') return tf.train.adam(lr, 0.9, 0.999, 1e-7);
  if (config.optimizer === 'rmsprop') return tf.train.rmsprop(lr, 0.9, config.momentum, 1e-7);
  return config.momentum > 0 || config.nesterov ? tf.train.momentum(lr, config.momentum, config.nesterov) : tf.train.sgd(lr);
}

/** Sets the rate the next `applyGradients` uses (SGD caches it as a tensor; the others read the field). */
export function setLearningRate(optimizer: Optimizer, lr: number): void {
  if ('setLearningRate' in optimizer && typeof optimizer.setLearningRate === 'function') optimizer.setLearningRate(lr);
  else (optimizer as unknown as { learningRate: number }).learningRate = lr;
}

export interface ScheduleConfig {
  schedule: ScheduleName;
  /** Linear warmup from lr/warmupSteps to lr over this many steps. */
  warmupSteps: number;
  /** Step decay: multiply by `gamma` every `stepSteps` steps. */
  stepSteps: number;
  gamma: number;
}

/**
 * The learning rate of optimizer step `step` (0-based) of `total`: linear warmup, then constant, cosine decay to 0
 * (as Keras's CosineDecay with warmup) or step decay.
 */
export function scheduledLr(base: number, step: number, total: number, config: ScheduleConfig): number {
  const warmup = Math.min(config.warmupSteps, total);
  if (step < warmup) return (base * (step + 1)) / warmup;
  const after = step - warmup;
  if (config.schedule === 'cosine') {
    const span = Math.max(1, total - warmup);
    return 0.5 * base * (1 + Math.cos((Math.PI * Math.min(after, span)) / span));
  }
  if (config.schedule === 'step') return base * config.gamma ** Math.floor(after / Math.max(1, config.stepSteps));
  if (config.schedule === 'one-cycle') {
    const span = Math.max(1, total - warmup);
    const pos = Math.min(after, span) / span;
    const { pctStart, div, divFinal } = ONE_CYCLE;
    return pos < pctStart ? cosineBetween(base / div, base, pos / pctStart) : cosineBetween(base, base / divFinal, (pos - pctStart) / (1 - pctStart));
  }
  return base;
}

/**
 * Decoupled weight decay as Keras 3 applies it before each update: w <- w - lr * decay * w, on every trainable
 * variable (AdamW when the optimizer is Adam).
 */
export function applyWeightDecay(tf: Tf, variables: Tensor[], lr: number, decay: number): void {
  if (decay <= 0) return;
  tf.tidy(() => {
    for (const v of variables) (v as ReturnType<Tf['variable']>).assign(tf.mul(v, 1 - lr * decay));
  });
}

/** sklearn's `class_weight='balanced'`: n / (classes * count_c); a class with no images gets weight 0. */
export function balancedClassWeights(labels: ArrayLike<number>, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  return counts.map((c) => (c === 0 ? 0 : labels.length / (classes * c)));
}

/**
 * Disposes an optimizer and everything it holds. tfjs 4.22's MomentumOptimizer.dispose() forgets the learning-rate
 * scalar its SGD parent keeps (`c`), which would leak one tensor per optimizer.
 */
export function disposeOptimizer(optimizer: Optimizer): void {
  optimizer.dispose();
  const c = (optimizer as unknown as { c?: Tensor }).c;
  if (c && !c.isDisposed) c.dispose();
}
