import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { WeightsError } from '../../src/errors.js';
import { onNotice } from '../../src/util/notice.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { loadPretrained } from '../../src/weights/index.js';
import { extractNsfwjsModel } from '../../src/weights/nsfwjs.js';
import { loadLayersModelFromFolder, readWeights } from '../../src/weights/tfjs.js';
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
    expect(readdirSync(folder).sort()).toEqual(['group1-shard1of1', 'group1-shard1of1.sha256', 'model.json', 'model.json.sha256']);
    expect(readdirSync(dirname(folder)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('an extraction that was damaged or left incomplete is extracted again, with a notice', async () => {
    const own = tempDir();
    const modelJson = await extractNsfwjsModel(own, 'mobilenet_v2');
    const folder = dirname(modelJson);
    const shard = join(folder, 'group1-shard1of1');
    const good = readFileSync(shard);
    const spoil: [string, () => void][] = [
      ['group1-shard1of1 does not match its recorded hash (damaged or changed)', () => { const b = Buffer.from(good); b[12345] = b[12345]! ^ 1; writeFileSync(shard, b); }],
      ['model.json missing', () => rmSync(modelJson)],
      ['group1-shard1of1 does not match its recorded hash (damaged or changed)', () => writeFileSync(shard, good.subarray(0, 1000))],
    ];
    for (const [why, damage] of spoil) {
      damage();
      const notices: string[] = [];
      const stop = onNotice((t) => notices.push(t));
      expect(await extractNsfwjsModel(own, 'mobilenet_v2')).toBe(modelJson);
      stop();
      expect(notices).toEqual([`the extracted nsfwjs model in ${folder} failed its integrity check (${why}); extracting it again`]);
      expect(readFileSync(shard).equals(good)).toBe(true);
    }
  });

  it('a shard that is a symlink to a file outside the model folder is refused', async () => {
    const modelJson = await extractNsfwjsModel(store, 'mobilenet_v2');
    const folder = tempDir();
    const outside = tempDir();
    writeFileSync(join(folder, 'model.json'), readFileSync(modelJson));
    writeFileSync(join(outside, 'secret.bin'), readFileSync(join(dirname(modelJson), 'group1-shard1of1')));
    symlinkSync(join(outside, 'secret.bin'), join(folder, 'group1-shard1of1'));
    const err = await readWeights(tf, join(folder, 'model.json')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toBe(`Shard 'group1-shard1of1' in ${join(folder, 'model.json')} is a link to ${join(outside, 'secret.bin')}, outside the model folder; refused.`);
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
