import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { loadPretrained } from '../../src/weights/index.js';
import { extractNsfwjsModel } from '../../src/weights/nsfwjs.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { relativeError } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const store = tempDir();
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

describe('nsfwjs bundled weights', () => {
  it('extracts once into the store, atomically, even with concurrent callers', async () => {
    const paths = await Promise.all([extractNsfwjsModel(store, 'mobilenet_v2'), extractNsfwjsModel(store, 'mobilenet_v2'), extractNsfwjsModel(store, 'mobilenet_v2')]);
    expect(new Set(paths).size).toBe(1);
    const folder = dirname(paths[0]!);
    expect(readdirSync(folder).sort()).toEqual(['group1-shard1of1', 'model.json']);
    expect(readdirSync(dirname(folder)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  for (const [model, size, batch, tolerance] of [['mobilenet_v2', 224, 2, 1e-5], ['inception_v3', 299, 1, 1e-4]] as const) {
    it(`tl's Keras-faithful ${model}.nsfwjs (tf.keras layer names) computes what the original nsfwjs model computes`, async () => {
      const before = tf.memory().numTensors;
      const tl = await loadPretrained(tf, `${model}.nsfwjs`, { includeTop: true, store });
      expect(tl.report?.unused).toEqual([]);
      const original = await loadLayersModelFromFolder(tf, await extractNsfwjsModel(store, model));
      const x = tf.randomUniform([batch, size, size, 3], 0, 1, 'float32', 3);
      const ours = tl.model.predict(x) as ReturnType<Tf['zeros']>;
      const theirs = original.predict(x) as ReturnType<Tf['zeros']>;
      expect(relativeError(await theirs.data(), await ours.data())).toBeLessThan(tolerance);
      tf.dispose([x, ours, theirs]);
      tl.model.dispose();
      original.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('without top, every backbone layer is filled and the nsfwjs head is left unused', async () => {
    const tl = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, store });
    expect(tl.report?.unused.sort()).toEqual(['dense_1', 'dense_2', 'dense_3']);
    expect(tl.report?.missing).toEqual([]);
    tl.model.dispose();
    expect(existsSync(store)).toBe(true);
  });
});
