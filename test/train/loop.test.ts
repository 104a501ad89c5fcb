import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, LayersModel, Tf } from '../../src/backend/index.js';
import { buildVariant } from '../../src/registry/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { attachHead, cutModel } from '../../src/model/index.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { relativeError } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 12, 32));
});

function options(out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions {
  return finetuneOptions(data, out, { store, freeze: 100, epochs: 2, batchSize: 8, lr: 3e-4, calibrate: 'none', val: 0.2, test: 0.2, seed: 1, ...extra });
}

/** Every weight of a saved run, by name. */
async function savedWeights(dir: string): Promise<Map<string, Float32Array>> {
  const model = await loadLayersModelFromFolder(tf, join(dir, 'model', 'model.json'));
  const out = new Map(model.weights.map((w) => [w.originalName, w.read().dataSync() as Float32Array]));
  model.dispose();
  return out;
}

function changed(a: Float32Array, b: Float32Array): boolean {
  return relativeError(a, b) > 1e-6;
}

describe('the fine-tuning loop (wasm)', () => {
  it('--freeze 100 trains the tail convolutions; frozen weights and every frozen BN statistic stay put', async () => {
    const epochs1 = tempDir();
    const epochs3 = tempDir();
    await finetune(tf, info, options(epochs1, { epochs: 1 }));
    const r = await finetune(tf, info, options(epochs3, { epochs: 3 }));
    expectLearned(r.history, 3);
    expect(r.frozenLayers).toBe(100);
    const a = await savedWeights(epochs1);
    const b = await savedWeights(epochs3);
    const layerIndex = (name: string) => name.split('/')[0]!;
    const backbone = buildVariant(tf, 'mobilenet_v2', { includeTop: false, inputSize: 64 });
    const order = backbone.layers.map((l) => l.name);
    backbone.dispose();
    const frozen = new Set(order.slice(0, 100));
    let trainedConvs = 0;
    for (const [name, w1] of a) {
      const w3 = b.get(name)!;
      const layer = layerIndex(name);
      if (frozen.has(layer) || /moving_(mean|variance)/.test(name)) {
        expect(changed(w1, w3), `${name} must not change`).toBe(false);
      } else if (/(project|expand|depthwise|Conv_1)\/(kernel|depthwise_kernel)/.test(name)) {
        if (changed(w1, w3)) trainedConvs++;
      }
    }
    expect(trainedConvs).toBeGreaterThan(10);
    // Layers after the boundary: the model's weights changed from epoch 1 to 3, so training happened in both runs.
    expect(changed(a.get('predictions/kernel')!, b.get('predictions/kernel')!)).toBe(true);
  });

  it('--bn train updates the moving statistics of trainable BN layers only', async () => {
    const frozenBn = tempDir();
    const trainBn = tempDir();
    expectLearned((await finetune(tf, info, options(frozenBn, { epochs: 2 }))).history, 3, 'statistics frozen');
    expectLearned((await finetune(tf, info, options(trainBn, { epochs: 2, bn: 'train' }))).history, 3, 'statistics trained');
    const a = await savedWeights(frozenBn);
    const b = await savedWeights(trainBn);
    expect(changed(a.get('Conv_1_bn/moving_mean')!, b.get('Conv_1_bn/moving_mean')!)).toBe(true);
    expect(changed(a.get('bn_Conv1/moving_mean')!, b.get('bn_Conv1/moving_mean')!)).toBe(false);
  });

  it('gradient accumulation gives the same update as the whole batch', async () => {
    const whole = tempDir();
    const accumulated = tempDir();
    expectLearned((await finetune(tf, info, options(whole, { epochs: 2, freeze: 'all', lr: 0.01 }))).history, 3, 'whole batches');
    expectLearned((await finetune(tf, info, options(accumulated, { epochs: 2, freeze: 'all', lr: 0.01, accumulate: 4 }))).history, 3, 'accumulated');
    const a = await savedWeights(whole);
    const b = await savedWeights(accumulated);
    expect(relativeError(a.get('predictions/kernel')!, b.get('predictions/kernel')!)).toBeLessThan(1e-4);
  });

  it('two data-parallel replicas give the same update as one thread', async () => {
    const one = tempDir();
    const two = tempDir();
    expectLearned((await finetune(tf, info, options(one, { epochs: 2 }))).history, 3, 'one thread');
    expectLearned((await finetune(tf, info, options(two, { epochs: 2, workers: 2 }))).history, 3, 'two replicas');
    const a = await savedWeights(one);
    const b = await savedWeights(two);
    for (const name of ['predictions/kernel', 'Conv_1/kernel', 'block_16_project/kernel', 'block_11_depthwise/depthwise_kernel']) {
      expect(relativeError(a.get(name)!, b.get(name)!), name).toBeLessThan(1e-4);
    }
  });

  it('trains MobileNetV3 (tl-defined layers in the tail) on two replicas', async () => {
    // No pretrained MobileNetV3 installs offline: random weights, whose BatchNorm trains (--bn auto).
    const r = await finetune(tf, info, options(tempDir(), { model: 'mobilenet_v3_small', weights: 'random', bn: 'auto', freeze: 150, epochs: 6, lr: 3e-3, workers: 2 }));
    expect(r.history).toHaveLength(6);
    expectLearned(r.history, 3);
  });

  it('leaks no tensors: the count is flat across epochs and back to where it started', async () => {
    const before = tf.memory().numTensors;
    const r = await finetune(tf, info, options(tempDir(), { epochs: 3, workers: 2 }));
    expectLearned(r.history, 3);
    expect(new Set(r.tensorsAfterEpoch).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('caches the frozen part: every epoch after the first hits the cache', async () => {
    const r = await finetune(tf, info, options(tempDir(), { epochs: 4 }));
    expectLearned(r.history, 3);
    expect(r.cache.enabled).toBe(true);
    // Epoch 1 misses once per image, epochs 2..4 and every evaluation hit.
    expect(r.cache.hitRate).toBeGreaterThan(0.7);
    const aug = await finetune(tf, info, options(tempDir(), { epochs: 2, augment: 'light' }));
    expect(aug.cache.enabled).toBe(false);
    expectLearned(aug.history, 3, 'augmented');
  });

  it('spills cached features to disk beyond the memory budget and trains the same', async () => {
    const inMemory = tempDir();
    const spilled = tempDir();
    expectLearned((await finetune(tf, info, options(inMemory, { epochs: 2 }))).history, 3, 'in memory');
    const r = await finetune(tf, info, options(spilled, { epochs: 2, cacheMb: 0 }));
    expectLearned(r.history, 3, 'spilled');
    expect(r.cache.spilled).toBeGreaterThan(0);
    const a = await savedWeights(inMemory);
    const b = await savedWeights(spilled);
    expect(relativeError(a.get('predictions/kernel')!, b.get('predictions/kernel')!)).toBeLessThan(1e-6);
  });
});

describe('the cut at the freeze boundary', () => {
  async function compareCut(name: string, freeze: number, expectedInputs: number, size: number): Promise<void> {
    const backbone = buildVariant(tf, name, { includeTop: false, inputSize: size });
    const full: LayersModel = attachHead(tf, backbone, { classes: 4, dropout: 0, name: 'm' });
    const frozen = new Set(backbone.layers.slice(0, freeze).map((l) => l.name));
    const cut = cutModel(tf, full, frozen);
    expect(cut.tail.inputs.length).toBe(expectedInputs);
    const x = tf.randomUniform([2, size, size, 3], -1, 1, 'float32', 5);
    const direct = full.predict(x) as ReturnType<Tf['zeros']>;
    const mid = cut.frozen!.predict(x);
    const viaCut = cut.tail.predict(mid) as ReturnType<Tf['zeros']>;
    expect(relativeError(await direct.data(), await viaCut.data())).toBeLessThan(1e-5);
    tf.dispose([x, direct, viaCut, ...(Array.isArray(mid) ? mid : [mid])]);
    cut.tail.dispose();
    full.dispose();
  }

  it('ResNet50 --freeze 140: the shortcut crosses the boundary, so the tail has two inputs', async () => {
    await compareCut('resnet50', 140, 2, 64);
  });

  it('MobileNetV2 --freeze 100: block_11_add takes block_10 across the boundary, so the tail has two inputs', async () => {
    await compareCut('mobilenet_v2', 100, 2, 64);
  });
});

describe('best epoch, early stopping and divergence', () => {
  for (const engine of ['tfjs', 'onnx'] as const) it(`stops early when val_accuracy stops improving and saves the best epoch (${engine})`, async () => {
    const out = tempDir();
    const r = await finetune(tf, info, options(out, { freeze: 'all', epochs: 30, lr: 0.05, monitor: 'val_accuracy', patience: 2, engine }));
    expect(r.phases[0]!.engine).toBe(engine);
    expect(r.stopReason).toMatch(/^early stopping: val_accuracy did not improve for 2 epochs/);
    expect(r.history.length).toBeLessThan(30);
    expect(r.best!.epoch).toBe(r.history.length - 2);
    expect(r.best!.value).toBe(Math.max(...r.history.map((h) => h.val_accuracy!)));
    expectLearned(r.history, 3);
  });

  for (const engine of ['tfjs', 'onnx'] as const) it(`a non-finite loss stops training, keeps finite weights and says so (${engine})`, async () => {
    const out = tempDir();
    // The one kind of training test that must not learn: it diverges on purpose.
    // The largest rate and weight decay the options allow: decoupled weight decay multiplies every weight by
    // 1 - lr x wd = -9 each step, so the weights overflow float32 within about 40 of the 60 steps.
    const r = await finetune(tf, info, options(out, { freeze: 'all', epochs: 20, lr: 10, weightDecay: 1, engine }));
    expect(r.phases[0]!.engine).toBe(engine);
    expect(r.stopReason).toMatch(/^the (loss became (NaN|Infinity)|weights became NaN or infinite|validation loss became (NaN|Infinity)) in epoch \d+/);
    const saved = await savedWeights(out);
    expect([...saved.values()].every((w) => w.every(Number.isFinite))).toBe(true);
    const report = JSON.parse((await import('node:fs')).readFileSync(join(out, 'report.json'), 'utf8')) as { stopReason: string };
    expect(report.stopReason).toBe(r.stopReason);
  });
});
