// A linear probe: a softmax classifier trained on a model's cached features (standardised with the training split's
// mean and deviation), validated on the validation split's. It trains with tl's own tfjs trainer (Adam, Keras's
// cross-entropy), the engine `tl finetune --freeze all` uses for a head, so its accuracy is what a head-only
// fine-tune of that model would reach on these features.
import { EPSILON } from '../backend/epsilon.js';
import type { Tensor, Tf } from '../backend/index.js';
import { initializeWeights } from '../registry/init.js';
import { TfjsTrainer } from '../step/tfjs.js';
import { mixSeed } from '../util/random.js';
import type { Features } from '../metrics/transferability.js';

export interface ProbeResult {
  valAccuracy: number;
  valLoss: number;
  epochs: number;
}

export const PROBE_EPOCHS = 60;
const PROBE_LR = 3e-3;
const PROBE_BATCH = 32;

/** A trained probe: class probabilities for features standardised as its training split's were. */
export interface Probe {
  predict(f: Features): Float32Array;
  dispose(): void;
}

/** Trains a softmax classifier on `train` (standardised by its own mean and deviation), seeded. */
export async function fitProbe(tf: Tf, train: Features, trainLabels: Int32Array, classes: number, seed: number): Promise<Probe> {
  const { d } = train;
  const mean = new Float64Array(d);
  const sd = new Float64Array(d);
  for (let i = 0; i < train.n; i++) for (let a = 0; a < d; a++) mean[a] = mean[a]! + train.data[i * d + a]! / train.n;
  for (let i = 0; i < train.n; i++) for (let a = 0; a < d; a++) sd[a] = sd[a]! + (train.data[i * d + a]! - mean[a]!) ** 2 / train.n;
  for (let a = 0; a < d; a++) sd[a] = Math.sqrt(sd[a]!) || 1;
  const standardise = (f: Features) => f.data.map((v, k) => (v - mean[k % d]!) / sd[k % d]!);
  const x = standardise(train);
  const input = tf.input({ shape: [d] });
  const output = tf.layers.dense({ units: classes, activation: 'softmax', name: 'probe' }).apply(input) as ReturnType<Tf['input']>;
  const model = tf.model({ inputs: input, outputs: output });
  initializeWeights(tf, model, mixSeed(seed, 31));
  const trainer = new TfjsTrainer(tf, model, { optimizer: { optimizer: 'adam', momentum: 0, nesterov: false }, lr: PROBE_LR, loss: { labelSmoothing: 0, classWeights: null }, weightDecay: 0, accumulate: 1, classes, boundaryShapes: [[d]], pool: null });
  try {
    for (let epoch = 0; epoch < PROBE_EPOCHS; epoch++) {
      // A seeded shuffle per epoch.
      const order = [...trainLabels.keys()].map((i) => ({ i, key: mixSeed(seed, epoch, i) })).sort((a, b) => a.key - b.key).map((o) => o.i);
      for (let start = 0; start < order.length; start += PROBE_BATCH) {
        const rows = order.slice(start, start + PROBE_BATCH);
        const boundary = new Float32Array(rows.length * d);
        rows.forEach((i, r) => boundary.set(x.subarray(i * d, (i + 1) * d), r * d));
        await trainer.step({ boundary: [boundary], labels: Int32Array.from(rows, (i) => trainLabels[i]!), lr: PROBE_LR, dropoutSeed: 0 });
      }
    }
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    await trainer.close();
  }
  return {
    predict: (f) => tf.tidy(() => (model.predict(tf.tensor2d(standardise(f), [f.n, d])) as Tensor).dataSync() as Float32Array),
    dispose: () => model.dispose(),
  };
}

/** Trains the probe on `train` and returns its accuracy and cross-entropy on `val`. */
export async function linearProbe(tf: Tf, train: Features, trainLabels: Int32Array, val: Features, valLabels: Int32Array, classes: number, seed: number): Promise<ProbeResult> {
  const probe = await fitProbe(tf, train, trainLabels, classes, seed);
  try {
    const probs = probe.predict(val);
    let hits = 0;
    let loss = 0;
    for (let i = 0; i < val.n; i++) {
      const row = probs.subarray(i * classes, (i + 1) * classes);
      const label = valLabels[i]!;
      if (row.indexOf(Math.max(...row)) === label) hits++;
      loss -= Math.log(Math.min(Math.max(row[label]!, EPSILON), 1));
    }
    return { valAccuracy: hits / val.n, valLoss: loss / val.n, epochs: PROBE_EPOCHS };
  } finally {
    probe.dispose();
  }
}
