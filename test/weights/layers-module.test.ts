import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadBackend, type Tensor } from '../../src/backend/index.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { runTl } from '../helpers/cli.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Loads `dir`'s model in a fresh Node process with plain @tensorflow/tfjs (optionally after tl-layers.mjs's register). */
function plainLoad(dir: string, register: boolean): { status: number | null; stdout: string; stderr: string } {
  const script = `
    import * as tf from '@tensorflow/tfjs';
    import { readFileSync } from 'node:fs';
    const dir = process.argv[1];
    if (${register}) (await import(dir + '/tl-layers.mjs')).register(tf);
    const json = JSON.parse(readFileSync(dir + '/model.json', 'utf8'));
    const w = readFileSync(dir + '/weights.bin');
    const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData: w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) }));
    const y = model.predict(tf.fill([1, 64, 64, 3], 100));
    console.log(JSON.stringify(Array.from(y.dataSync())));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, join(dir, 'model')], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}


describe('a MobileNetV3 run loads in plain TensorFlow.js', () => {
  it('with the tl-layers.mjs written beside it, and gives the predictions tl gives', async () => {
    const data = tempDir();
    await makeColourDataset(data, 2, 10, 32);
    const out = join(tempDir(), 'run');
    // No pretrained MobileNetV3 installs offline: from random weights, its last blocks train (BatchNorm included).
    const r = await runTl(['finetune', data, '--model', 'mobilenet_v3_small', '--weights', 'random', '--input-size', '64', '--freeze', '150', '--epochs', '6', '--lr', '3e-3', '--batch-size', '4', '--out', out], { TL_HOME: tempDir() });
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(out);
    expect(existsSync(join(out, 'model', 'tl-layers.mjs'))).toBe(true);
    // Without the module, TensorFlow.js cannot build the model; with it, it can.
    const without = plainLoad(out, false);
    expect(without.status).not.toBe(0);
    expect(without.stderr).toMatch(/Unknown layer: (TFOpLambda|GlobalAveragePooling2D)|keepdims/);
    const loaded = plainLoad(out, true);
    expect(loaded.status, loaded.stderr).toBe(0);
    const plain = JSON.parse(loaded.stdout.trim().split('\n').pop()!) as number[];
    // The plain process runs TensorFlow.js's default Node backend (cpu): the same kernels on this side (the run in this
    // process left wasm active).
    const { tf } = await loadBackend({ choice: 'cpu' });
    const model = await loadLayersModelFromFolder(tf, join(out, 'model', 'model.json'));
    const ours = tf.tidy(() => Array.from((model.predict(tf.fill([1, 64, 64, 3], 100)) as Tensor).dataSync()));
    model.dispose();
    plain.forEach((v, i) => expect(v).toBeCloseTo(ours[i]!, 5));
  });

  it('a run without those layers gets no module', async () => {
    const data = tempDir();
    await makeColourDataset(data, 2, 10, 32);
    const out = join(tempDir(), 'run');
    const r = await runTl(['finetune', data, '--model', 'mobilenet_v2.nsfwjs', '--input-size', '32', '--freeze', 'all', '--epochs', '5', '--lr', '0.01', '--batch-size', '4', '--out', out], { TL_HOME: tempDir() });
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(out);
    expect(existsSync(join(out, 'model', 'tl-layers.mjs'))).toBe(false);
  });
});
