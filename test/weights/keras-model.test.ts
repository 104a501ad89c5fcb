import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { buildVariant } from '../../src/registry/index.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { loadPretrained } from '../../src/weights/index.js';
import { writeKerasFile } from '../helpers/keras-h5.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const quick = ['--input-size', '32', '--epochs', '5', '--lr', '0.01', '--batch-size', '4', '--freeze', 'all', '--calibrate', 'none'];

beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  await makeColourDataset(data, 2, 10, 32);
});

/**
 * A Keras file of MobileNetV2 with real pretrained weights (nsfwjs's, which a run can learn from), or with `broken`,
 * mobilenet_v2_035 with every weight seeded random (negative BatchNorm variances give NaN activations); returns one
 * frozen weight to compare.
 */
async function kerasFile(fullModel: boolean, modelName?: string, broken = false): Promise<{ path: string; conv1: number[] }> {
  const model = broken ? buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 32 }) : (await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, inputSize: 32, store: tempDir() })).model;
  if (broken) tf.tidy(() => model.weights.forEach((w, i) => w.write(tf.randomNormal(w.shape as number[], 0, 0.1, 'float32', i + 7))));
  const path = join(tempDir(), 'my-model.h5');
  await writeKerasFile(path, model, { fullModel, colonZero: true, splitAttrs: false, ...(modelName ? { modelName } : {}) });
  const conv1 = Array.from(model.getLayer('Conv1').getWeights()[0]!.dataSync());
  model.dispose();
  return { path, conv1 };
}

async function savedConv1(out: string): Promise<number[]> {
  const model = await loadLayersModelFromFolder(tf, join(out, 'model', 'model.json'));
  const w = Array.from(model.getLayer('Conv1').getWeights()[0]!.dataSync());
  model.dispose();
  return w;
}

describe('--model FILE.h5', () => {
  it('a weights-only file with --arch, and a full-model file whose config names a Keras application', async () => {
    const weightsOnly = await kerasFile(false);
    const noArch = await runCli(['finetune', data, '--model', weightsOnly.path, ...quick], env);
    expect(noArch.exitCode).toBe(2);
    expect(noArch.stderr).toContain('Pass --arch NAME');
    const out = join(tempDir(), 'run');
    const r = await runCli(['finetune', data, '--model', weightsOnly.path, '--arch', 'mobilenet_v2', '--preprocess', 'raw01', ...quick, '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await savedConv1(out)).toEqual(weightsOnly.conv1);
    expectRunLearned(out);

    const full = await kerasFile(true, 'mobilenetv2_1.00_224');
    const out2 = join(tempDir(), 'run');
    const r2 = await runCli(['finetune', data, '--model', full.path, '--preprocess', 'raw01', ...quick, '--out', out2], env);
    expect(r2.exitCode, r2.stderr).toBe(0);
    expect(await savedConv1(out2)).toEqual(full.conv1);
    expectRunLearned(out2);
  });

  it('a full Keras model of an architecture tl does not know is built from its config (with --preprocess)', async () => {
    // Features strong enough that a head learns from them in a few steps (the second convolution's kernel is large).
    const L = tf.layers;
    const input = tf.input({ shape: [32, 32, 3], name: 'image' });
    let x = L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'my_conv', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(input) as ReturnType<typeof L.conv2d>['output'];
    x = L.batchNormalization({ name: 'my_bn' }).apply(x) as typeof x;
    x = L.reLU({ name: 'my_relu' }).apply(x) as typeof x;
    x = L.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'my_conv2', kernelInitializer: tf.initializers.randomNormal({ stddev: 1, seed: 3 }) }).apply(x) as typeof x;
    x = L.globalAveragePooling2d({ name: 'my_pool' }).apply(x) as typeof x;
    x = L.dense({ units: 10, activation: 'softmax', name: 'my_top' }).apply(x) as typeof x;
    const custom = tf.model({ inputs: input, outputs: x as never, name: 'my_custom_net' });
    const config = { ...(custom.toJSON(null, false) as Record<string, unknown>), class_name: 'Functional' };
    const path = join(tempDir(), 'custom.h5');
    await writeKerasFile(path, custom, { fullModel: true, colonZero: true, splitAttrs: false, modelConfig: config });
    const kernel = Array.from(custom.getLayer('my_conv2').getWeights()[0]!.dataSync());
    custom.dispose();
    const noPreprocess = await runCli(['finetune', data, '--model', path, ...quick], env);
    expect(noPreprocess.exitCode).toBe(2);
    expect(noPreprocess.stderr).toContain('pass --preprocess');
    const out = join(tempDir(), 'run');
    const r = await runCli(['finetune', data, '--model', path, '--preprocess', 'raw01', ...quick, '--lr', '0.05', '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const saved = await loadLayersModelFromFolder(tf, join(out, 'model', 'model.json'));
    expect(Array.from(saved.getLayer('my_conv2').getWeights()[0]!.dataSync())).toEqual(kernel);
    expect(saved.layers.some((l) => l.name === 'my_top')).toBe(false);
    saved.dispose();
    expectRunLearned(out);
  });

  it('weights that give NaN end in one clear error, with the run folder and no test metrics', async () => {
    const broken = await kerasFile(false, undefined, true);
    const out = join(tempDir(), 'run');
    const r = await runCli(['finetune', data, '--model', broken.path, '--arch', 'mobilenet_v2_035', ...quick, '--out', out], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).not.toContain('internal error');
    expect(r.stderr).toMatch(/error: Training diverged: the loss became NaN/);
    expect(r.stderr).toContain('no test metrics');
  });

  it('a file that is not HDF5 is one line naming it', async () => {
    const fake = join(tempDir(), 'model.h5');
    writeFileSync(fake, '<html>not found</html>');
    const r = await runCli(['finetune', data, '--model', fake, '--arch', 'mobilenet_v2_035', ...quick], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^backend: .*\nerror: .*model\.h5 is not an HDF5 file \(it starts with "<html>no"\)/);
    expect(r.stderr).not.toContain('HDF5-DIAG');
  });
});
