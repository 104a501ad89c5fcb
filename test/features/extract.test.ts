import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { decodeImage } from '../../src/data/decode.js';
import { preprocess } from '../../src/data/index.js';
import { extract, indexPathFor, type ExtractOptions } from '../../src/features/index.js';
import { loadFeatureModel } from '../../src/inference/index.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { relativeError } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const data = tempDir();
const store = tempDir();

beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  await makeColourDataset(data, 2, 6, 32);
  writeFileSync(join(data, 'class1', 'broken.png'), Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(40)]));
});

function options(out: string, extra: Partial<ExtractOptions> = {}): ExtractOptions {
  // Pretrained weights: an untrained MobileNetV2's pooled features vanish (~1e-10), which would make comparisons weak.
  return { inputs: [data], model: 'mobilenet_v2.nsfwjs', out, format: 'npy', batchSize: 5, workers: 1, backend: 'wasm', val: 0.2, test: 0.2, seed: 3, resize: 'squash', maxPixels: 1e8, inputSize: 64, store, ...extra };
}

/** Parses a float32 .npy file as numpy 1.0 writes it. */
function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const buf = readFileSync(path);
  expect(buf.toString('latin1', 0, 6)).toBe('\x93NUMPY');
  const len = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + len);
  expect(header).toContain("'descr': '<f4'");
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1]!.split(',').filter((s) => s.trim()).map(Number);
  const body = buf.subarray(10 + len);
  return { shape, data: new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length)) };
}

describe('tl extract (wasm)', () => {
  it('writes pooled features as .npy with an index; rows equal a direct forward pass; bad files are skipped', async () => {
    const out = join(tempDir(), 'features.npy');
    const before = tf.memory().numTensors;
    const r = await extract(tf, options(out, { workers: 2 }));
    expect(tf.memory().numTensors).toBe(before);
    expect(r.count).toBe(12);
    expect(r.shape).toEqual([12, 1280]);
    expect(r.dataset).toBe(true);
    expect(r.skipped.map((s) => s.path)).toEqual([join(data, 'class1', 'broken.png')]);
    const npy = readNpy(out);
    expect(npy.shape).toEqual([12, 1280]);
    const index = readFileSync(indexPathFor(out), 'utf8').trim().split('\n');
    expect(index[0]).toBe('row,path,class,split');
    expect(index).toHaveLength(13);
    const rows = index.slice(1).map((l) => l.split(','));
    expect(new Set(rows.map((c) => c[2]))).toEqual(new Set(['class0', 'class1']));
    expect(new Set(rows.map((c) => c[3]))).toEqual(new Set(['train', 'val', 'test']));

    // Features of a real backbone: clearly non-zero, and different between the two classes.
    expect(Math.max(...npy.data.map(Math.abs))).toBeGreaterThan(0.1);
    expect(relativeError(npy.data.subarray(0, 1280), npy.data.subarray(11 * 1280, 12 * 1280))).toBeGreaterThan(0.05);
    // The same model, loaded again, run directly on three of the images.
    const im = await loadFeatureModel(tf, 'mobilenet_v2.nsfwjs', { inputSize: 64, store });
    for (const row of [0, 5, 11]) {
      const pixels = await decodeImage(rows[row]![1]!, { size: 64, resize: 'squash', maxPixels: 1e8 });
      const y = tf.tidy(() => im.model.predict(preprocess(tf, tf.tensor4d(Float32Array.from(pixels), [1, 64, 64, 3]), im.preprocess)) as ReturnType<Tf['tensor']>);
      expect(relativeError(npy.data.subarray(row * 1280, (row + 1) * 1280), y.dataSync() as Float32Array)).toBeLessThan(1e-5);
      y.dispose();
    }
    im.dispose();
  });

  it('csv and jsonl carry path, class, split and the same features; --layer gives a feature map', async () => {
    const dir = tempDir();
    const npy = await extract(tf, options(join(dir, 'f.npy')));
    const csv = await extract(tf, options(join(dir, 'f.csv'), { format: 'csv' }));
    const jsonl = await extract(tf, options(join(dir, 'f.jsonl'), { format: 'jsonl' }));
    expect(csv.count).toBe(npy.count);
    const matrix = readNpy(join(dir, 'f.npy')).data;
    const csvRows = readFileSync(join(dir, 'f.csv'), 'utf8').trim().split('\n');
    expect(csvRows[0]!.split(',').slice(0, 5)).toEqual(['path', 'class', 'split', 'f0', 'f1']);
    const first = csvRows[1]!.split(',');
    expect(relativeError(Float32Array.from(first.slice(3).map(Number)), matrix.subarray(0, 1280))).toBeLessThan(1e-6);
    const lines = readFileSync(join(dir, 'f.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; class: string; split: string; features: number[] });
    expect(lines).toHaveLength(jsonl.count);
    expect(lines[0]!.path).toBe(first[0]);
    expect(relativeError(Float32Array.from(lines[0]!.features), matrix.subarray(0, 1280))).toBeLessThan(1e-6);
    const map = await extract(tf, options(join(dir, 'map.npy'), { layer: 'block_13_expand_relu' }));
    expect(map.shape).toEqual([12, 4, 4, 576]);
    expect(readNpy(join(dir, 'map.npy')).shape).toEqual([12, 4, 4, 576]);
    await expect(extract(tf, options(join(dir, 'x.npy'), { layer: 'nope' }))).rejects.toThrow(/--layer nope: no layer of that name/);
  });

  it('on ONNX Runtime the features equal those of tfjs within 1e-4', async () => {
    const dir = tempDir();
    await extract(tf, options(join(dir, 't.npy')));
    const before = tf.memory().numTensors;
    const r = await extract(tf, options(join(dir, 'o.npy'), { engine: 'onnx' }));
    expect(tf.memory().numTensors).toBe(before);
    expect(r.count).toBe(12);
    expect(relativeError(readNpy(join(dir, 'o.npy')).data, readNpy(join(dir, 't.npy')).data)).toBeLessThan(1e-4);
    expect(readFileSync(indexPathFor(join(dir, 'o.npy')), 'utf8')).toBe(readFileSync(indexPathFor(join(dir, 't.npy')), 'utf8').replace(/t\.npy/g, 'o.npy'));
  });

  it('plain image files get no class or split', async () => {
    const out = join(tempDir(), 'f.npy');
    const r = await extract(tf, options(out, { inputs: [join(data, 'class0', 'img0.png'), join(data, 'class1')] }));
    expect(r.dataset).toBe(false);
    expect(r.count).toBe(7);
    const rows = readFileSync(indexPathFor(out), 'utf8').trim().split('\n').slice(1);
    expect(rows[0]).toBe(`0,${join(data, 'class0', 'img0.png')},,`);
  });

  const numpy = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!numpy)('the .npy loads with numpy', async () => {
    const out = join(tempDir(), 'features.npy');
    await extract(tf, options(out));
    const py = spawnSync('/usr/bin/python3', ['-c', `import numpy; a = numpy.load(${JSON.stringify(out)}); print(a.shape, a.dtype, float(a[3, 7]))`], { encoding: 'utf8' });
    expect(py.status, py.stderr).toBe(0);
    const [shape, dtype, value] = [py.stdout.slice(0, py.stdout.indexOf(')') + 1), py.stdout.split(' ').at(-2), Number(py.stdout.split(' ').at(-1))];
    expect(shape).toBe('(12, 1280)');
    expect(dtype).toBe('float32');
    expect(value).toBeCloseTo(readNpy(out).data[3 * 1280 + 7]!, 6);
  });
});
