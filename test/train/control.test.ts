import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { TlError } from '../../src/errors.js';
import { readCheckpoint, writeCheckpoint } from '../../src/train/checkpoint.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { balancedClassWeights, scheduledLr } from '../../src/step/optim.js';
import { trainingLoss } from '../../src/model/loss.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 12, 32));
});

describe('learning-rate schedules', () => {
  const base = { warmupSteps: 0, stepSteps: 10, gamma: 0.1 };
  it('warms up linearly, then follows the schedule', () => {
    expect([0, 1, 2, 3].map((s) => scheduledLr(1, s, 10, { ...base, schedule: 'constant', warmupSteps: 4 }))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(scheduledLr(1, 4, 10, { ...base, schedule: 'constant', warmupSteps: 4 })).toBe(1);
  });
  it('cosine decays from lr to 0 over the steps after warmup', () => {
    const lr = (s: number) => scheduledLr(0.1, s, 12, { ...base, schedule: 'cosine', warmupSteps: 2 });
    expect(lr(2)).toBeCloseTo(0.1, 12);
    expect(lr(7)).toBeCloseTo(0.05, 12);
    expect(lr(12)).toBeCloseTo(0, 12);
    expect(lr(4)).toBeCloseTo(0.05 * (1 + Math.cos(Math.PI * 0.2)), 12);
  });
  it("one-cycle follows fastai's fit_one_cycle: lr/25 at the start, lr at a quarter, lr/1e5 at the end, half-cosines between", () => {
    const lr = (s: number) => scheduledLr(0.1, s, 80, { ...base, schedule: 'one-cycle' });
    expect(lr(0)).toBeCloseTo(0.1 / 25, 12);
    // Half way up and half way down: the midpoints of each half-cosine.
    expect(lr(10)).toBeCloseTo((0.1 / 25 + 0.1) / 2, 12);
    expect(lr(20)).toBeCloseTo(0.1, 12);
    expect(lr(50)).toBeCloseTo((0.1 + 0.1 / 1e5) / 2, 12);
    expect(lr(80)).toBeCloseTo(0.1 / 1e5, 12);
    // Rising, then falling, step by step.
    const rates = Array.from({ length: 81 }, (_, s) => lr(s));
    expect(rates.slice(0, 21).every((r, i) => i === 0 || r > rates[i - 1]!)).toBe(true);
    expect(rates.slice(20).every((r, i) => i === 0 || r < rates[20 + i - 1]!)).toBe(true);
  });
  it('step decay multiplies by gamma every stepSteps', () => {
    const lr = (s: number) => scheduledLr(1, s, 100, { ...base, schedule: 'step' });
    expect([0, 9, 10, 19, 20].map(lr).map((v) => Number(v.toPrecision(6)))).toEqual([1, 1, 0.1, 0.1, 0.01]);
  });
});

describe('loss', () => {
  it("balanced class weights are sklearn's n / (classes * count)", () => {
    expect(balancedClassWeights([0, 0, 0, 1], 2)).toEqual([4 / 6, 2]);
    expect(balancedClassWeights([0, 1, 1], 3)).toEqual([1, 0.5, 0]);
  });

  it('class weights and label smoothing change the loss as computed by hand', () => {
    const probs = tf.tensor2d([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]]);
    const labels = tf.tensor1d([0, 1], 'int32');
    const before = tf.memory().numTensors;
    const value = (labelSmoothing: number, classWeights: number[] | null) => {
      const t = trainingLoss(tf, probs, labels, 3, { labelSmoothing, classWeights });
      const v = t.dataSync()[0]!;
      t.dispose();
      return v;
    };
    const ce0 = -Math.log(0.7);
    const ce1 = -Math.log(0.6);
    expect(value(0, null)).toBeCloseTo((ce0 + ce1) / 2, 6);
    // Keras: each image's loss times its class weight, summed, divided by the batch size.
    expect(value(0, [1, 3, 1])).toBeCloseTo((ce0 + 3 * ce1) / 2, 6);
    // Smoothing 0.3 over 3 classes: targets 0.8 / 0.1 / 0.1.
    const s0 = -(0.8 * Math.log(0.7) + 0.1 * Math.log(0.2) + 0.1 * Math.log(0.1));
    const s1 = -(0.1 * Math.log(0.3) + 0.8 * Math.log(0.6) + 0.1 * Math.log(0.1));
    expect(value(0.3, null)).toBeCloseTo((s0 + s1) / 2, 6);
    expect(value(0.3, [2, 0.5, 1])).toBeCloseTo((2 * s0 + 0.5 * s1) / 2, 6);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([probs, labels]);
  });
});

describe('checkpoints', () => {
  it('round-trip state and tensors, and name a damaged file', async () => {
    const path = join(tempDir(), 'c.ckpt');
    const w = { name: 'dense/kernel', shape: [2, 3], dtype: 'float32' as const, data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) };
    const it = { name: 'iter', shape: [], dtype: 'int32' as const, data: Int32Array.from([7]) };
    await writeCheckpoint(path, { epoch: 3, history: [{ loss: 0.5 }] }, { weights: [w], optimizer: [it] });
    const back = await readCheckpoint<{ epoch: number }>(path);
    expect(back.state).toEqual({ epoch: 3, history: [{ loss: 0.5 }] });
    expect(Array.from(back.groups.weights![0]!.data)).toEqual([1, 2, 3, 4, 5, 6.5]);
    expect(back.groups.optimizer![0]).toMatchObject({ name: 'iter', shape: [], dtype: 'int32' });
    expect(back.groups.optimizer![0]!.data[0]).toBe(7);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 3));
    await expect(readCheckpoint(path)).rejects.toThrow(`${path} is not a usable tl checkpoint: truncated data at 'iter'.`);
    writeFileSync(path, 'hello world, not a checkpoint');
    await expect(readCheckpoint(path)).rejects.toBeInstanceOf(TlError);
  });
});

function options(out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions {
  return finetuneOptions(data, out, { freeze: 100, headEpochs: 1, epochs: 2, batchSize: 4, dropout: 0.2, augment: 'light', val: 0.2, test: 0.2, seed: 5, workers: 2, store, ...extra });
}

const metrics = (rows: { loss: number; accuracy: number; val_loss: number | null; val_accuracy: number | null; lr: number }[]) => rows.map((r) => [r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.lr]);

// Every training-control feature on both engines: TensorFlow.js (wasm) and the compiled train step on ONNX Runtime.
for (const engine of ['tfjs', 'onnx'] as const) describe(`repeatable runs and training control (${engine})`, () => {
  it('the same seed gives the same metrics (dropout, augmentation, two replicas, two phases); another seed does not', async () => {
    const before = tf.memory().numTensors;
    const a = await finetune(tf, info, options(tempDir(), { engine }));
    const b = await finetune(tf, info, options(tempDir(), { engine }));
    const c = await finetune(tf, info, options(tempDir(), { seed: 6, engine }));
    expect(a.phases.map((p) => p.engine)).toEqual([engine, engine]);
    expect(a.phases.map((p) => [p.name, p.first, p.last])).toEqual([['head', 1, 1], ['finetune', 2, 3]]);
    expect(a.history).toHaveLength(3);
    expect(metrics(b.history)).toEqual(metrics(a.history));
    expect(b.test).toEqual(a.test);
    expect(metrics(c.history)).not.toEqual(metrics(a.history));
    expectLearned(a.history, 3, 'seed 5');
    expectLearned(c.history, 3, 'seed 6');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('optimizers, schedules, weight decay, smoothing and class weights all train and are recorded', async () => {
    const before = tf.memory().numTensors;
    for (const extra of [
      { optimizer: 'sgd', lr: 3e-4, epochs: 4, nesterov: true, schedule: 'cosine', warmupEpochs: 0.5, weightDecay: 1e-4 },
      { optimizer: 'rmsprop', lr: 1e-4, epochs: 3, schedule: 'step', stepEpochs: 1, gamma: 0.5, labelSmoothing: 0.1, classWeight: 'balanced' },
    ] as Partial<FinetuneOptions>[]) {
      const out = tempDir();
      const r = await finetune(tf, info, options(out, { headEpochs: 0, epochs: 2, augment: 'none', workers: 1, engine, ...extra }));
      expect(r.phases[0]!.engine).toBe(engine);
      expectLearned(r.history, 3, extra.optimizer);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config).toMatchObject(extra);
      if (extra.schedule === 'step') expect(r.history.map((row) => row.lr)).toEqual([1e-4, 5e-5, 2.5e-5]);
      if (extra.classWeight === 'balanced') expect(config.classWeights).toHaveLength(3);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('training control', () => {
  it('--head-epochs needs a freeze point inside the backbone', async () => {
    await expect(finetune(tf, info, options(tempDir(), { freeze: 'all' }))).rejects.toThrow(/--head-epochs 1 needs --freeze below the whole backbone/);
  });
});
