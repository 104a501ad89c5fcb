import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type LayersModel, type Tf } from '../../src/backend/index.js';
import { exportedGraph } from '../../src/engine/index.js';
import { onNotice } from '../../src/util/notice.js';
import { exportOnnx, OnnxExportError } from '../../src/onnx/export.js';
import { OnnxSession } from '../../src/onnx/runtime.js';
import { buildVariant, resolveVariant, variantNames } from '../../src/registry/index.js';
import { attachHead, cutModel } from '../../src/model/index.js';
import { randomArray, relativeError } from '../helpers/tensors.js';
import { randomize as randomizeWeights } from '../helpers/models.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
});

const randomize = (model: LayersModel, seed: number) => randomizeWeights(tf, model, seed);

/** ONNX Runtime's outputs and tfjs's for the same random batch; the largest relative error over the outputs. */
async function compare(model: LayersModel, size: number): Promise<number> {
  const x = randomArray(2 * size * size * 3, 11);
  const session = await OnnxSession.open(exportOnnx(model), { threads: 2 });
  const ours = await session.run([{ data: x, shape: [2, size, size, 3] }]);
  await session.close();
  const refs = tf.tidy(() => {
    const y = model.predict(tf.tensor4d(x, [2, size, size, 3]));
    return (Array.isArray(y) ? y : [y]).map((t) => t.dataSync() as Float32Array);
  });
  expect(ours.map((o) => o.length)).toEqual(refs.map((r) => r.length));
  return Math.max(...ours.map((o, i) => relativeError(o, refs[i]!)));
}

// Every registry architecture (weight tags share their base's graph; nsfwjs variants add their own head).
const names = variantNames().filter((n) => !n.includes('.') || n.endsWith('.nsfwjs'));

describe('ONNX export, every registry model (random weights) against tfjs', () => {
  for (const name of names) {
    const family = resolveVariant(name).family.name;
    // VGG's top flattens a 7x7 map into 4096-unit layers (over 100M parameters): its top is tested on a small model below.
    const withTop = family !== 'vgg';
    it(`${name}${withTop ? ' (with and without top)' : ' (without top)'}`, async () => {
      const size = family === 'inception_v3' ? 75 : family === 'mobilenet' ? 128 : 64;
      for (const includeTop of withTop ? [false, true] : [false]) {
        const model = buildVariant(tf, name, { includeTop, inputSize: includeTop && family === 'inception_v3' ? 299 : size });
        randomize(model, 3);
        expect(await compare(model, includeTop && family === 'inception_v3' ? 299 : size), `${name} top=${includeTop}`).toBeLessThan(1e-4);
        model.dispose();
      }
    }, 120_000);
  }

  it("VGG's top (Flatten of an NHWC map into Dense) keeps Keras's element order", async () => {
    const input = tf.input({ shape: [6, 5, 3] });
    let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(input) as ReturnType<Tf['input']>;
    x = tf.layers.maxPooling2d({ poolSize: 2, padding: 'same' }).apply(x) as ReturnType<Tf['input']>;
    x = tf.layers.flatten().apply(x) as ReturnType<Tf['input']>;
    x = tf.layers.dense({ units: 7, activation: 'softmax' }).apply(x) as ReturnType<Tf['input']>;
    const model = tf.model({ inputs: input, outputs: x });
    const data = randomArray(2 * 6 * 5 * 3, 2);
    const session = await OnnxSession.open(exportOnnx(model));
    const [y] = await session.run([{ data, shape: [2, 6, 5, 3] }]);
    await session.close();
    const ref = tf.tidy(() => (model.predict(tf.tensor4d(data, [2, 6, 5, 3])) as ReturnType<Tf['tensor']>).dataSync() as Float32Array);
    expect(relativeError(y!, ref)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('a layer ONNX cannot express is a clear error naming it', () => {
    const input = tf.input({ shape: [4, 4, 3] });
    const out = tf.layers.upSampling2d({ size: [2, 2], name: 'up' }).apply(input) as ReturnType<Tf['input']>;
    const model = tf.model({ inputs: input, outputs: out });
    expect(() => exportOnnx(model)).toThrow(OnnxExportError);
    expect(() => exportOnnx(model)).toThrow('up: layer class UpSampling2D has no ONNX export.');
    model.dispose();
  });
});

describe('ONNX export of freeze cuts (several outputs) against tfjs', () => {
  const cuts: [string, number, number][] = [['resnet50', 140, 2], ['resnet50', 80, 1], ['mobilenet_v2', 100, 2], ['mobilenet_v2', 30, 1], ['inception_v3', 100, 3], ['mobilenet_v3_small', 60, 0]];
  for (const [name, freeze, expectedOutputs] of cuts) {
    it(`${name} --freeze ${freeze}`, async () => {
      const size = name === 'inception_v3' ? 75 : 64;
      const backbone = buildVariant(tf, name, { includeTop: false, inputSize: size });
      const full = attachHead(tf, backbone, { classes: 3, dropout: 0.2, name: 'x' });
      randomize(full, 5);
      const cut = cutModel(tf, full, new Set(backbone.layers.slice(0, freeze).map((l) => l.name)));
      if (expectedOutputs > 0) expect(cut.frozen!.outputs.length).toBe(expectedOutputs);
      expect(await compare(cut.frozen!, size)).toBeLessThan(1e-4);
      cut.tail.dispose();
      full.dispose();
    }, 120_000);
  }
});

describe('the ONNX cache in the store', () => {
  it('exports once per model content; other weights give another file', async () => {
    const store = tempDir();
    const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 48 });
    randomize(model, 1);
    const { path: a } = await exportedGraph(model, store);
    const { path: again } = await exportedGraph(model, store);
    expect(again).toBe(a);
    expect(a.startsWith(join(store, 'onnx'))).toBe(true);
    const bytes = readFileSync(a);
    randomize(model, 2);
    const { path: b } = await exportedGraph(model, store);
    expect(b).not.toBe(a);
    expect(readFileSync(a).equals(bytes)).toBe(true);
    model.dispose();
  });

  it('a cached graph that was damaged, truncated or has no recorded hash is exported again, with a notice', async () => {
    const store = tempDir();
    const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 48 });
    randomize(model, 3);
    const { path, bytes } = await exportedGraph(model, store);
    const good = Buffer.from(bytes);
    const damage: [string, () => void][] = [
      ['does not match its recorded hash (damaged or changed)', () => { const b = Buffer.from(good); b[b.length >> 1] = b[b.length >> 1]! ^ 0x40; writeFileSync(path, b); }],
      ['does not match its recorded hash (damaged or changed)', () => writeFileSync(path, good.subarray(0, good.length >> 1))],
      ['has no recorded hash', () => rmSync(`${path}.sha256`)],
    ];
    for (const [words, spoil] of damage) {
      spoil();
      const notices: string[] = [];
      const stop = onNotice((t) => notices.push(t));
      const again = await exportedGraph(model, store);
      stop();
      expect(notices).toEqual([`the cached ONNX graph ${path} ${words}; exported it again`]);
      expect(Buffer.from(again.bytes).equals(good)).toBe(true);
      expect(readFileSync(path).equals(good)).toBe(true);
    }
    model.dispose();
  });
});
