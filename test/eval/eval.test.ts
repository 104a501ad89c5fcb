import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { evaluate } from '../../src/eval/index.js';
import { predict } from '../../src/inference/predict.js';
import { finetune, type FinetuneResult } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
const run = join(tempDir(), 'run');
let trained: FinetuneResult;

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 14, 32));
  trained = await finetune(tf, info, {
    data, model: 'mobilenet_v2.nsfwjs', out: run, freeze: 'all', epochs: 3, batchSize: 8, lr: 0.01, accumulate: 1, bn: 'frozen', dropout: 0,
    augment: 'none', inputSize: 64, val: 0.2, test: 0.3, seed: 4, resize: 'squash', maxPixels: 1e8, weights: 'pretrained', workers: 1, store,
  });
}, 120_000);

describe('tl eval (wasm)', () => {
  it("evaluates exactly the run's held-out test files and agrees with the run's own test metrics", async () => {
    const before = tf.memory().numTensors;
    expectLearned(trained.history, 3, 'the evaluated run');
    const r = await evaluate(tf, { run, split: 'test', batchSize: 5, workers: 2, backend: 'wasm', store });
    expect(tf.memory().numTensors).toBe(before);
    const split = JSON.parse(readFileSync(join(run, 'split.json'), 'utf8')) as { files: Record<string, string> };
    const testFiles = Object.entries(split.files).filter(([, s]) => s === 'test').map(([rel]) => join(data, rel)).sort();
    const perClass = r.metrics!.perClass.map((c) => c.support);
    expect(r.usedRunSplit).toBe(true);
    expect(r.metrics!.count).toBe(testFiles.length);
    expect(perClass.reduce((a, b) => a + b, 0)).toBe(testFiles.length);
    // Every file it judged is one of the run's test files (the mistakes name files; accuracy checks the rest).
    for (const m of r.metrics!.mistakes) expect(testFiles).toContain(m.path);
    expect(r.metrics!.accuracy).toBeCloseTo(trained.test!.accuracy, 10);
    expect(r.metrics!.logLoss).toBeCloseTo(trained.test!.loss, 12);
    // The same probabilities, summed in another order: equal to float64 rounding.
    const { logLoss: _a, ...judged } = r.metrics!;
    const { logLoss: _b, ...own } = trained.metrics!;
    expect(judged).toEqual(own);
  });

  it('--split val uses the validation files; another folder is evaluated whole', async () => {
    const val = await evaluate(tf, { run, split: 'val', batchSize: 8, workers: 1, backend: 'wasm', store });
    const split = JSON.parse(readFileSync(join(run, 'split.json'), 'utf8')) as { files: Record<string, string> };
    expect(val.metrics!.count).toBe(Object.values(split.files).filter((s) => s === 'val').length);
    const other = tempDir();
    cpSync(join(data, 'class0'), join(other, 'class0'), { recursive: true });
    cpSync(join(data, 'class2'), join(other, 'class2'), { recursive: true });
    cpSync(join(data, 'class1'), join(other, 'unknown'), { recursive: true });
    const whole = await evaluate(tf, { run, data: other, split: 'test', batchSize: 8, workers: 1, backend: 'wasm', store });
    expect(whole.usedRunSplit).toBe(false);
    expect(whole.split).toBe('all');
    expect(whole.metrics!.count).toBe(28);
    expect(whole.skipped).toHaveLength(14);
    expect(whole.skipped[0]!.reason).toBe("class 'unknown' is not one of the model's classes");
    expect(whole.metrics!.perClass.map((c) => c.support)).toEqual([14, 0, 14]);
  });

  it('ONNX Runtime gives the same metrics as tfjs', async () => {
    const onnx = await evaluate(tf, { run, split: 'test', batchSize: 5, workers: 1, backend: 'wasm', engine: 'onnx', store });
    expect(onnx.metrics!.accuracy).toBe(trained.metrics!.accuracy);
    expect(onnx.metrics!.confusion).toEqual(trained.metrics!.confusion);
    expect(onnx.metrics!.logLoss).toBeCloseTo(trained.metrics!.logLoss, 4);
  });

  it('fine-tuning on ONNX Runtime (frozen part and compiled train step) gives the metrics of tfjs to float32 noise', async () => {
    const common = {
      data, model: 'mobilenet_v2.nsfwjs', freeze: 100, epochs: 2, batchSize: 8, lr: 1e-3, optimizer: 'sgd' as const, accumulate: 1, bn: 'frozen' as const, dropout: 0,
      augment: 'none' as const, inputSize: 64, val: 0.2, test: 0.3, seed: 4, resize: 'squash' as const, maxPixels: 1e8, weights: 'pretrained' as const, workers: 1, store,
    };
    const before = tf.memory().numTensors;
    const a = await finetune(tf, info, { ...common, out: tempDir(), engine: 'tfjs' });
    const b = await finetune(tf, info, { ...common, out: tempDir(), engine: 'onnx' });
    expect(tf.memory().numTensors).toBe(before);
    expect([a.phases[0]!.engine, b.phases[0]!.engine]).toEqual(['tfjs', 'onnx']);
    expectLearned(a.history, 3, 'tfjs');
    expectLearned(b.history, 3, 'onnx');
    // Features differ by ~1e-6 (relative). SGD keeps that size; Adam's first steps move every weight by +-lr
    // whatever the gradient's size, so a near-zero gradient whose sign the noise flips would grow it.
    const close = (x: number, y: number) => Math.abs(x - y) / Math.max(1e-6, Math.abs(y));
    b.history.forEach((row, i) => {
      const ref = a.history[i]!;
      expect(close(row.loss, ref.loss), `epoch ${row.epoch} loss`).toBeLessThan(1e-4);
      expect(close(row.val_loss!, ref.val_loss!), `epoch ${row.epoch} val_loss`).toBeLessThan(1e-4);
      expect(row.accuracy).toBe(ref.accuracy);
    });
    expect(close(b.test!.loss, a.test!.loss)).toBeLessThan(1e-4);
    expect(b.metrics!.confusion).toEqual(a.metrics!.confusion);
  });

  it('predict gives each image its top classes, most probable first, summing to at most 1', async () => {
    const r = await predict(tf, { model: run, inputs: [join(data, 'class2')], top: 2, batchSize: 4, workers: 1, backend: 'wasm', store });
    expect(r.predictions).toHaveLength(14);
    for (const p of r.predictions) {
      expect(p.top).toHaveLength(2);
      expect(p.top[0]!.probability).toBeGreaterThanOrEqual(p.top[1]!.probability);
      expect(p.top[0]!.probability + p.top[1]!.probability).toBeLessThanOrEqual(1 + 1e-6);
    }
    expect(r.predictions.filter((p) => p.top[0]!.class === 'class2').length).toBeGreaterThan(7);
  });
});
