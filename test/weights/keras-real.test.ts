// Files Keras itself wrote: MobileNetV2 (alpha 0.35, 96 px, no top) saved by Keras 3.15.1 with `model.save('x.h5')`
// and with `save_weights('x.weights.h5')` (Keras 3's own layout: layers/<name>/vars/<index>), seeded random weights
// and BatchNorm statistics (scripts/keras3_fixture.py wrote test/fixtures/keras3). tl reads both as `--model FILE.h5`
// and gives Keras's own outputs for the same input batch.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tensor, type Tf } from '../../src/backend/index.js';
import { resolveModel } from '../../src/weights/resolve.js';
import { readNpy } from '../../src/util/npy.js';
import { runTl } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/keras3/${name}`, import.meta.url));
const npy = (name: string) => {
  const a = readNpy(readFileSync(fixture(name)), name);
  return { shape: a.shape, data: new Float32Array(a.body.buffer.slice(a.body.byteOffset, a.body.byteOffset + a.body.byteLength)) };
};

let tf: Tf;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
});

describe('Keras 3 .h5 files', () => {
  it.each([
    ['model.save (a full model whose config names the application)', 'mobilenetv2_035_notop.h5', {}],
    ['save_weights (weights by position, with --arch)', 'mobilenetv2_035_notop.weights.h5', { arch: 'mobilenet_v2_035', inputSize: 96 }],
  ])("%s: loads as --model FILE.h5 and gives Keras's outputs", async (_, file, want) => {
    const im = await resolveModel(tf, fixture(file), { top: false, store: tempDir(), preprocess: 'none', ...want });
    // The size the file was saved at (the full model's InputLayer batch_shape), not the registry's 224.
    expect(im.inputSize).toBe(96);
    expect(im.model.layers.at(-1)!.name).toBe('out_relu');
    const input = npy('input.npy');
    const expected = npy('output.npy');
    const before = tf.memory().numTensors;
    const x = tf.tensor(input.data, input.shape);
    const y = im.model.predict(x) as Tensor;
    x.dispose();
    expect(y.shape).toEqual(expected.shape);
    const got = y.dataSync() as Float32Array;
    y.dispose();
    let worst = 0;
    let scale = 0;
    got.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - expected.data[i]!));
      scale = Math.max(scale, Math.abs(expected.data[i]!));
    });
    expect(scale).toBeGreaterThan(0.5);
    expect(worst / scale).toBeLessThan(1e-4);
    expect(tf.memory().numTensors).toBe(before);
    im.model.dispose();
  });
});

describe('tl models import of a Keras 3 file', () => {
  it('takes the application its config names, and checks every weight against it', async () => {
    const home = tempDir();
    const r = await runTl(['models', 'import', fixture('mobilenetv2_035_notop.h5'), '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { model: string }).model).toBe('mobilenet_v2_035');
    const weights = await runTl(['models', 'import', fixture('mobilenetv2_035_notop.weights.h5')], { TL_HOME: home });
    expect(weights.exitCode).toBe(2);
    expect(weights.stderr).toContain('nor its config (if any) names a registry model');
  });
});
