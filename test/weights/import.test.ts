import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { buildVariant, resolveVariant } from '../../src/registry/index.js';
import { loadPretrained } from '../../src/weights/index.js';
import { kerasStorePath } from '../../src/store/paths.js';
import { writeKerasFile } from '../helpers/keras-h5.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

/** The registry's Keras source of `model` without its top. */
function noTop(model: string) {
  const source = resolveVariant(model).variant.weights.find((w) => w.kind === 'keras-h5' && !w.includeTop);
  if (source?.kind !== 'keras-h5') throw new Error(`${model} has no Keras no-top source`);
  return { ...source, file: basename(new URL(source.url).pathname) };
}

/** A Keras weight file for `model` (random weights from `seed`) under `name`. */
async function kerasFile(model: string, name: string, inputSize: number): Promise<{ path: string; weights: Float32Array[] }> {
  const built = buildVariant(tf, model, { includeTop: false, inputSize });
  tf.tidy(() => built.weights.forEach((w, i) => w.write(tf.randomNormal(w.shape as number[], 0, 0.1, 'float32', i + 1))));
  const path = join(tempDir(), name);
  await writeKerasFile(path, built, { fullModel: false, colonZero: true, splitAttrs: false });
  const weights = built.weights.map((w) => w.read().dataSync() as Float32Array);
  built.dispose();
  return { path, weights };
}

describe('tl models import', () => {
  it('a file Keras publishes no hash for is checked layer by layer, stored with its sha256, and then used offline', async () => {
    const store = tempDir();
    const source = noTop('mobilenet_v2_035');
    expect(source.hash).toBeNull();
    const { path, weights } = await kerasFile('mobilenet_v2_035', source.file, 96);
    const r = await runCli(['models', 'import', path, '--json'], { ...process.env, TL_HOME: store });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { model: string; storedAt: string; verified: string; sha256: string };
    expect(result).toMatchObject({ model: 'mobilenet_v2_035', verified: 'recorded sha256', storedAt: kerasStorePath(store, source.url) });
    expect(readFileSync(`${result.storedAt}.sha256`, 'utf8').trim()).toBe(result.sha256);
    // Offline: no download is attempted (a request would fail), and the weights are the file's.
    const loaded = await loadPretrained(tf, 'mobilenet_v2_035', { includeTop: false, weights: 'pretrained', inputSize: 96, store, onDownload: () => { throw new Error('downloaded'); } });
    loaded.model.weights.forEach((w, i) => expect(Array.from(w.read().dataSync() as Float32Array)).toEqual(Array.from(weights[i]!)));
    loaded.model.dispose();
    // And `tl models` now lists it as offline, the nsfwjs models as offline from their npm package.
    const list = JSON.parse((await runCli(['models', '--json'], { ...process.env, TL_HOME: store })).stdout) as { name: string; offline: string }[];
    expect(list.find((m) => m.name === 'mobilenet_v2_035')!.offline).toBe('store');
    expect(list.find((m) => m.name === 'inception_v3.nsfwjs')!.offline).toBe('npm package');
    expect(list.find((m) => m.name === 'resnet50')!.offline).toBe('no');
  });

  it('refuses a file that is not HDF5, one that fails the published hash, one for another model, and a name it cannot place', async () => {
    const env = { ...process.env, TL_HOME: tempDir() };
    const text = join(tempDir(), 'weights.h5');
    writeFileSync(text, 'name not defined!\n');
    const notH5 = await runCli(['models', 'import', text, '--model', 'mobilenet_v2_035'], env);
    expect(notH5.exitCode).toBe(1);
    expect(notH5.stderr).toMatch(/error: .*weights\.h5 is not an HDF5 file \(it starts with "name not"\)/);
    expect(notH5.stderr.trim().split('\n')).toHaveLength(1);

    const hashed = noTop('mobilenet_025');
    expect(hashed.hash).not.toBeNull();
    const forged = await kerasFile('mobilenet_025', hashed.file, 128);
    const bad = await runCli(['models', 'import', forged.path], env);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain(`Keras publishes ${hashed.hash} for ${hashed.file} (mobilenet_025): it is another file or a damaged copy`);
    expect(existsSync(kerasStorePath(env.TL_HOME, hashed.url))).toBe(false);

    const other = await kerasFile('mobilenet_v2_035', 'my-weights.h5', 96);
    const unplaced = await runCli(['models', 'import', other.path], env);
    expect(unplaced.exitCode).toBe(2);
    expect(unplaced.stderr).toContain('Pass --model NAME');
    const wrongModel = await runCli(['models', 'import', other.path, '--model', 'mobilenet_v2_050'], env);
    expect(wrongModel.exitCode).toBe(1);
    expect(wrongModel.stderr).toMatch(/Shape mismatch for '\w+\/\w+'/);
    const right = await runCli(['models', 'import', other.path, '--model', 'mobilenet_v2_035'], env);
    expect(right.exitCode, right.stderr).toBe(0);
    expect(right.stdout).toContain("imported");
  });
});
