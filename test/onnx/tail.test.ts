// The tail's forward pass on ONNX Runtime (what validation, calibration and the test split run) against tfjs.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { applyTrainability, attachHead, cutModel } from '../../src/model/index.js';
import { nchwcBlockSize } from '../../src/onnx/runtime.js';
import { OnnxTail } from '../../src/onnx/tail.js';
import { buildVariant } from '../../src/registry/index.js';
import { randomize } from '../helpers/models.js';

let tf: Tf;
let block = 0;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  block = await nchwcBlockSize();
});

function tailOf(name: string, size: number, freeze: number, bn: 'frozen' | 'train') {
  const backbone = buildVariant(tf, name, { includeTop: false, inputSize: size });
  const full = attachHead(tf, backbone, { classes: 4, dropout: 0.5, name: 'full' });
  randomize(tf, full, 3);
  applyTrainability(full, new Set(backbone.layers.slice(0, freeze).map((l) => l.name)), bn);
  return { full, cut: cutModel(tf, full, new Set(backbone.layers.slice(0, freeze).map((l) => l.name))) };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe('the tail on ONNX Runtime', () => {
  const cases: [string, number, number, 'frozen' | 'train'][] = [
    ['mobilenet_v2_035', 64, 100, 'frozen'], ['mobilenet_v2_035', 64, 100, 'train'], ['resnet50', 64, 140, 'frozen'], ['mobilenet_v3_small', 64, 0, 'frozen'],
  ];
  for (const lowering of ['gather', 'nchwc'] as const) {
    for (const [name, size, freeze, bn] of cases) {
      it(`${name} --freeze ${freeze} --bn ${bn} (${lowering}): the probabilities of tfjs's predict (dropout off, moving statistics)`, async (ctx) => {
        if (lowering === 'nchwc' && block === 0) {
          console.log('skipped: ONNX Runtime has no NCHWc kernels on this CPU');
          ctx.skip();
        }
        const { full, cut } = tailOf(name, size, freeze, bn);
        const n = 5;
        const inputs = cut.boundaryShapes.map((s, i) => tf.randomUniform([n, ...s], 0, 3, 'float32', 20 + i));
        const before = tf.memory().numTensors;
        const tail = await OnnxTail.open(cut.tail, { boundaryShapes: cut.boundaryShapes, nchwc: lowering === 'nchwc' ? { block, batch: 8 } : null });
        const expected = tf.tidy(() => (cut.tail.predict(inputs.length === 1 ? inputs[0]! : inputs) as ReturnType<Tf['tensor']>).dataSync());
        const ours = await tail.predict(inputs.map((x) => x.dataSync() as Float32Array), n);
        expect(ours.length).toBe(n * 4);
        expect(maxDiff(ours, expected)).toBeLessThan(1e-5);
        await tail.close();
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose(inputs);
        if (cut.tail !== full) cut.tail.dispose();
        full.dispose();
      }, 60_000);
    }
  }

  for (const lowering of ['gather', 'nchwc'] as const) {
    it(`gives each training BatchNormalization's batch mean and variance as tfjs's training-mode pass computes them (${lowering})`, async (ctx) => {
      if (lowering === 'nchwc' && block === 0) {
        console.log('skipped: ONNX Runtime has no NCHWc kernels on this CPU');
        ctx.skip();
      }
      const { full, cut } = tailOf('mobilenet_v2_035', 64, 100, 'train');
      const inputs = cut.boundaryShapes.map((s, i) => tf.randomUniform([6, ...s], 0, 3, 'float32', 60 + i));
      const tail = await OnnxTail.open(cut.tail, { boundaryShapes: cut.boundaryShapes, nchwc: lowering === 'nchwc' ? { block, batch: 8 } : null });
      tail.refresh();
      const ours = await tail.batchStatistics(inputs.map((x) => x.dataSync() as Float32Array), 6);
      // tfjs: a training-mode call at momentum 0 leaves the batch statistics in the moving averages.
      const norms = cut.tail.layers.filter((l) => l.getClassName() === 'BatchNormalization' && l.trainable);
      for (const l of norms) (l as unknown as { momentum: number }).momentum = 0;
      tf.tidy(() => void cut.tail.apply(inputs.length === 1 ? inputs[0]! : inputs, { training: true }));
      const moving = cut.tail.weights.filter((w) => /moving_(mean|variance)/.test(w.originalName));
      expect(moving.length).toBe(2 * norms.length);
      expect([...ours.keys()].sort()).toEqual(moving.map((w) => w.originalName).sort());
      for (const w of moving) {
        const expected = w.read().dataSync() as Float32Array;
        const scale = Math.max(...Array.from(expected, Math.abs));
        expect(maxDiff(ours.get(w.originalName)!, expected) / scale, w.originalName).toBeLessThan(1e-4);
      }
      await tail.close();
      tf.dispose(inputs);
      cut.tail.dispose();
      full.dispose();
    }, 60_000);
  }

  it('reads the weights when refreshed: a changed classifier changes nothing until then, and everything after', async () => {
    const { full, cut } = tailOf('mobilenet_v2_035', 64, 100, 'frozen');
    const inputs = cut.boundaryShapes.map((s, i) => tf.randomUniform([3, ...s], 0, 3, 'float32', 40 + i));
    const arrays = inputs.map((x) => x.dataSync() as Float32Array);
    const tail = await OnnxTail.open(cut.tail, { boundaryShapes: cut.boundaryShapes, nchwc: null });
    tail.refresh();
    const first = await tail.predict(arrays, 3);
    const classifier = full.layers.at(-1)!;
    tf.tidy(() => classifier.weights.forEach((w) => w.write(tf.mul(w.read(), 3))));
    expect(maxDiff(await tail.predict(arrays, 3), first)).toBe(0);
    tail.refresh();
    const changed = await tail.predict(arrays, 3);
    const expected = tf.tidy(() => (cut.tail.predict(inputs.length === 1 ? inputs[0]! : inputs) as ReturnType<Tf['tensor']>).dataSync());
    expect(maxDiff(changed, first)).toBeGreaterThan(1e-3);
    expect(maxDiff(changed, expected)).toBeLessThan(1e-5);
    await tail.close();
    tf.dispose(inputs);
    cut.tail.dispose();
    full.dispose();
  });
});

describe('dropout masks', () => {
  it('are the masks tf.dropout draws for the same seed, value for value', async () => {
    const { dropoutMask } = await import('../../src/util/dropout.js');
    for (const [rate, count, seed] of [[0.2, 16 * 1280, 7], [0.5, 1000, 123456789], [0.7, 333, 0], [1 / 3, 4096, 2 ** 31 - 1]] as const) {
      const expected = tf.tidy(() => tf.dropout(tf.ones([count]), rate, undefined, seed).dataSync() as Float32Array);
      const ours = dropoutMask(count, rate, seed);
      expect(Array.from(ours)).toEqual(Array.from(expected));
      // Roughly the rate dropped, and each kept value is 1 / (1 - rate) as float32.
      const dropped = ours.filter((v) => v === 0).length / count;
      expect(Math.abs(dropped - rate)).toBeLessThan(0.06);
    }
    expect(Array.from(dropoutMask(5, 0, 1))).toEqual([1, 1, 1, 1, 1]);
  });
});
