// SGD with momentum, with and without Nesterov, on both engines: two steps from the same start give different weights,
// and each matches the update computed by hand for the variant asked for.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type LayersModel, type Tf } from '../../src/backend/index.js';
import type { Trainer } from '../../src/step/index.js';
import { OnnxTrainer } from '../../src/step/onnx.js';
import { TfjsTrainer } from '../../src/step/tfjs.js';

let tf: Tf;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
});

const D = 4;
const K = 3;
const N = 2;
const x = Float32Array.from({ length: N * D }, (_, i) => Math.sin(i + 1));
const labels = Int32Array.of(2, 0);
const W0 = Float32Array.from({ length: D * K }, (_, i) => 0.1 * Math.cos(3 * i));
const B0 = Float32Array.from({ length: K }, (_, i) => 0.05 * i);
const LR = 0.5;
const MOMENTUM = 0.9;

/** The gradient of the mean cross-entropy of softmax(xW + b) (no probability reaches the clip bounds here). */
function gradient(w: Float32Array, b: Float32Array): { w: Float64Array; b: Float64Array } {
  const gw = new Float64Array(D * K);
  const gb = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    const z = Array.from({ length: K }, (_, k) => b[k]! + Array.from({ length: D }, (_, d) => x[n * D + d]! * w[d * K + k]!).reduce((a, c) => a + c, 0));
    const max = Math.max(...z);
    const e = z.map((v) => Math.exp(v - max));
    const sum = e.reduce((a, c) => a + c, 0);
    for (let k = 0; k < K; k++) {
      const dz = (e[k]! / sum - (labels[n] === k ? 1 : 0)) / N;
      gb[k]! += dz;
      for (let d = 0; d < D; d++) gw[d * K + k]! += x[n * D + d]! * dz;
    }
  }
  return { w: gw, b: gb };
}

/** Two steps of tfjs's momentum SGD: accum = m * accum + g; w -= lr * accum, or w -= lr * (g + m * accum) with Nesterov. */
function byHand(nesterov: boolean): { w: Float32Array; b: Float32Array } {
  let w = Float32Array.from(W0);
  let b = Float32Array.from(B0);
  const accum = { w: new Float64Array(D * K), b: new Float64Array(K) };
  for (let step = 0; step < 2; step++) {
    const g = gradient(w, b);
    const update = (value: Float32Array, grad: Float64Array, acc: Float64Array) =>
      Float32Array.from(value, (v, i) => {
        acc[i] = MOMENTUM * acc[i]! + grad[i]!;
        return v - LR * (nesterov ? grad[i]! + MOMENTUM * acc[i]! : acc[i]!);
      });
    w = update(w, g.w, accum.w);
    b = update(b, g.b, accum.b);
  }
  return { w, b };
}

function tail(): LayersModel {
  const input = tf.input({ shape: [D], name: 'boundary' });
  const out = tf.layers.dense({ units: K, activation: 'softmax', name: 'classifier' }).apply(input);
  const model = tf.model({ inputs: input, outputs: out as never, name: 'tail' });
  const start = [tf.tensor2d(W0, [D, K]), tf.tensor1d(B0)];
  model.layers[1]!.setWeights(start);
  tf.dispose(start);
  return model;
}

async function trained(engine: 'onnx' | 'tfjs', nesterov: boolean, momentum = MOMENTUM, weightDecay = 0): Promise<{ w: Float32Array; b: Float32Array }> {
  const model = tail();
  const optimizer = { optimizer: 'sgd' as const, momentum, nesterov };
  const loss = { labelSmoothing: 0, classWeights: null };
  const trainer: Trainer = engine === 'onnx'
    ? await OnnxTrainer.open(tf, model, { optimizer, loss, weightDecay, boundaryShapes: [[D]], batchSize: N })
    : new TfjsTrainer(tf, model, { optimizer, lr: LR, loss, weightDecay, accumulate: 1, classes: K, boundaryShapes: [[D]], pool: null });
  try {
    for (let step = 0; step < 2; step++) await trainer.step({ boundary: [x], labels, lr: LR, dropoutSeed: step });
    trainer.syncWeights();
    const [w, b] = model.layers[1]!.getWeights().map((t) => t.dataSync() as Float32Array);
    return { w: Float32Array.from(w!), b: Float32Array.from(b!) };
  } finally {
    await trainer.close();
    model.dispose();
  }
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('SGD with momentum', () => {
  for (const engine of ['onnx', 'tfjs'] as const) {
    it(`applies Nesterov only when asked, as computed by hand (${engine})`, async () => {
      const before = tf.memory().numTensors;
      const plain = await trained(engine, false);
      const nesterov = await trained(engine, true);
      const hand = { plain: byHand(false), nesterov: byHand(true) };
      // The two variants differ by far more than the tolerance, so matching one is not matching both.
      expect(maxDiff(hand.plain.w, hand.nesterov.w)).toBeGreaterThan(1e-2);
      expect(maxDiff(plain.w, hand.plain.w)).toBeLessThan(1e-5);
      expect(maxDiff(plain.b, hand.plain.b)).toBeLessThan(1e-5);
      expect(maxDiff(nesterov.w, hand.nesterov.w)).toBeLessThan(1e-5);
      expect(maxDiff(nesterov.b, hand.nesterov.b)).toBeLessThan(1e-5);
      expect(tf.memory().numTensors).toBe(before);
    });

    it(`decays the weights as asked: w (1 - lr wd) - lr g, decoupled from the gradient (${engine})`, async () => {
      const wd = 0.2;
      const decayed = await trained(engine, false, 0, wd);
      // By hand, two steps of plain SGD with the decay applied to the weight before the gradient step.
      let w = Float32Array.from(W0);
      let b = Float32Array.from(B0);
      for (let step = 0; step < 2; step++) {
        const g = gradient(w, b);
        w = Float32Array.from(w, (v, i) => v * (1 - LR * wd) - LR * g.w[i]!);
        b = Float32Array.from(b, (v, i) => v * (1 - LR * wd) - LR * g.b[i]!);
      }
      expect(maxDiff(decayed.w, w)).toBeLessThan(1e-5);
      expect(maxDiff(decayed.b, b)).toBeLessThan(1e-5);
      const undecayed = await trained(engine, false, 0, 0);
      expect(maxDiff(undecayed.w, w)).toBeGreaterThan(1e-3);
    });
  }
});
