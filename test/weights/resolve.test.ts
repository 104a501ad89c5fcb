// One resolver for --model: what a spec names, and the same input size, preprocessing and labels whichever command
// loads it; tl's metadata is checked, never cast.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { ModelNotFoundError, UsageError, WeightsError } from '../../src/errors.js';
import { exportModel } from '../../src/export/index.js';
import { loadClassifier, loadFeatureModel } from '../../src/inference/index.js';
import { layersMetadata } from '../../src/registry/metadata.js';
import { loadBackbone } from '../../src/weights/backbone.js';
import { modelSource, resolveModel } from '../../src/weights/resolve.js';
import { saveLayersModel } from '../../src/weights/save.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const run = tempDir();
const store = tempDir();

/** A small classifier saved as a tl run folder: 48 px, 'tf' preprocessing, classes a and b. */
async function writeRun(dir: string, metadata: Record<string, unknown>): Promise<void> {
  const input = tf.input({ shape: [48, 48, 3], name: 'input' });
  const conv = tf.layers.conv2d({ filters: 4, kernelSize: 3, name: 'conv' }).apply(input);
  const pooled = tf.layers.globalAveragePooling2d({ name: 'head_pool' }).apply(conv);
  const out = tf.layers.dense({ units: 2, activation: 'softmax', name: 'classifier' }).apply(pooled);
  const model = tf.model({ inputs: input, outputs: out as never, name: 'small' });
  await saveLayersModel(tf, model, join(dir, 'model'), metadata);
  model.dispose();
}

beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  await writeRun(run, layersMetadata({ name: 'mobilenet_v2_035', classes: ['a', 'b'], preprocess: 'tf', inputSize: 48, temperature: null }));
});

describe('modelSource', () => {
  it('names what a spec is without loading it', () => {
    expect(modelSource('mobilenet_v2_035')).toEqual({ kind: 'registry', name: 'mobilenet_v2_035' });
    expect(modelSource(run)).toEqual({ kind: 'folder', modelJson: join(run, 'model', 'model.json') });
    expect(modelSource(join(run, 'model'))).toEqual({ kind: 'folder', modelJson: join(run, 'model', 'model.json') });
    expect(modelSource('http://127.0.0.1:1/m/model.json')).toEqual({ kind: 'url', url: 'http://127.0.0.1:1/m/model.json' });
    expect(modelSource('weights.h5')).toEqual({ kind: 'h5', file: 'weights.h5' });
    expect(() => modelSource(join(run, 'nope'))).toThrow(ModelNotFoundError);
    expect(() => modelSource('resnet51')).toThrow(/Unknown model 'resnet51'. Known models: .*resnet50/);
  });
});

describe('every command resolves a run the same way', () => {
  it('finetune, predict, extract and export see its input size, preprocessing and labels', async () => {
    const before = tf.memory().numTensors;
    const backbone = await loadBackbone(tf, run, { weights: 'pretrained', store, keepHead: true });
    expect([backbone.inputSize, backbone.preprocess, backbone.withHead?.classes]).toEqual([48, 'tf', ['a', 'b']]);
    // The run's architecture's default freeze point comes with it.
    expect(backbone.fineTuneFrom).toBeDefined();
    backbone.withHead!.model.dispose();
    const classifier = await loadClassifier(tf, run, { store });
    expect([classifier.inputSize, classifier.preprocess, classifier.classes]).toEqual([48, 'tf', ['a', 'b']]);
    classifier.dispose();
    const features = await loadFeatureModel(tf, run, { store });
    expect([features.inputSize, features.preprocess, features.outputLayer]).toEqual([48, 'tf', 'head_pool']);
    features.dispose();
    const out = join(tempDir(), 'tfjs');
    const exported = await exportModel(tf, { model: run, format: 'tfjs', out, store });
    expect(exported.inputShape).toEqual([null, 48, 48, 3]);
    expect(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8'))).toEqual(['a', 'b']);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('an --input-size the run cannot take is refused by each, not ignored', async () => {
    await expect(loadBackbone(tf, run, { weights: 'pretrained', store, inputSize: 64 })).rejects.toThrow(/--input-size 64: .* takes inputs of 48 x 48 pixels only/);
    await expect(loadFeatureModel(tf, run, { store, inputSize: 64 })).rejects.toThrow(/--input-size 64/);
    await expect(exportModel(tf, { model: run, format: 'onnx', out: join(tempDir(), 'm.onnx'), inputSize: 64, store })).rejects.toThrow(/--input-size 64/);
  });

  it('a registry model without its top has no classes to predict: the classifier loader says so', async () => {
    const r = await resolveModel(tf, 'mobilenet_v2_035', { top: false, weights: 'random', inputSize: 32, store });
    expect([r.headless, r.classes, r.inputSize]).toEqual([true, null, 32]);
    r.model.dispose();
  });
});

describe("tl's metadata is checked", () => {
  const bad = tempDir();

  it('a malformed tl entry is an error naming the file, for every command', async () => {
    await writeRun(bad, { tl: { model: 'mobilenet_v2_035', classes: ['a', 'b'], preprocess: 'bgr', inputSize: 48 } });
    const file = join(bad, 'model', 'model.json');
    for (const load of [() => loadBackbone(tf, bad, { weights: 'pretrained', store }), () => loadClassifier(tf, bad, { store }), () => loadFeatureModel(tf, bad, { store })]) {
      const err = await load().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WeightsError);
      expect((err as Error).message).toContain(`${file}: its tl metadata is malformed (preprocess:`);
    }
  });

  it('a model without tl metadata needs --preprocess, and takes it', async () => {
    const plain = tempDir();
    await writeRun(plain, {});
    await expect(loadClassifier(tf, plain, { store })).rejects.toThrow(UsageError);
    const c = await loadClassifier(tf, plain, { store, preprocess: 'raw01' });
    expect([c.preprocess, c.inputSize, c.classes]).toEqual(['raw01', 48, ['class_0', 'class_1']]);
    c.dispose();
  });
});
