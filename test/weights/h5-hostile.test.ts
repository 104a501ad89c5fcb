// Damaged and hostile Keras .h5 files given as --model: one clear line each, shapes refused before any value is read.
import fs, { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { buildVariant } from '../../src/registry/index.js';
import { writeKerasFile } from '../helpers/keras-h5.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };

beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
  await makeColourDataset(data, 2, 4, 16);
});

/** A weights file whose one weight `Conv1/kernel` has `shape` and holds no data (chunks never written). */
async function hugeDataset(path: string, shape: number[]): Promise<void> {
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  const f = new h5wasm.File(path, 'w');
  f.create_attribute('layer_names', ['Conv1']);
  const g = f.create_group('Conv1');
  g.create_attribute('weight_names', ['Conv1/kernel:0']);
  const ds = g.create_group('Conv1').create_dataset({ name: 'kernel:0', data: new Float32Array(1), shape: [1, 1], dtype: '<f', maxshape: [null, null], chunks: [1000, 1000] });
  ds.resize(shape);
  f.close();
}

/** Runs tl with what reaches the real stderr captured too (HDF5's own diagnostics would go there). */
async function run(args: string[]): Promise<{ exitCode: number; stderr: string; raw: string }> {
  let raw = '';
  const write = process.stderr.write.bind(process.stderr);
  const writeSync = fs.writeSync;
  process.stderr.write = ((chunk: string | Uint8Array) => ((raw += String(chunk)), true)) as typeof process.stderr.write;
  // The wasm library's C stderr goes out through fs.writeSync(2, ...).
  fs.writeSync = ((fd: number, buffer: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    if (fd !== 2) return (writeSync as (...a: unknown[]) => number)(fd, buffer, ...rest);
    raw += typeof buffer === 'string' ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength).toString();
    return typeof buffer === 'string' ? Buffer.byteLength(buffer) : buffer.byteLength;
  }) as typeof fs.writeSync;
  try {
    const r = await runCli(['finetune', data, '--arch', 'mobilenet_v2_035', '--input-size', '32', '--epochs', '1', '--out', join(tempDir(), 'run'), ...args], env);
    return { exitCode: r.exitCode, stderr: r.stderr, raw };
  } finally {
    process.stderr.write = write;
    fs.writeSync = writeSync;
  }
}

describe('damaged and hostile .h5 files', () => {
  it('a truncated file is one line saying so, with no HDF5 diagnostics', async () => {
    const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 32 });
    const file = join(tempDir(), 'weights.h5');
    await writeKerasFile(file, model, { fullModel: false, colonZero: true, splitAttrs: false });
    model.dispose();
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const r = await run(['--model', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: ${file} is truncated: ${Math.floor(bytes.length / 2)} bytes, and its HDF5 superblock says ${bytes.length}\\.$`, 'm'));
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.raw).not.toMatch(/HDF5-DIAG/);
  });

  it('a dataset of a trillion values is refused from its shape, allocating nothing', async () => {
    const file = join(tempDir(), 'huge.h5');
    await hugeDataset(file, [1_000_000, 1_000_000]);
    const r = await run(['--model', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: ${file}: weight 'Conv1/Conv1/kernel:0' has shape [1000000, 1000000] (1000000000000 values)`);
    expect(r.stderr).not.toMatch(/internal error|allocation/i);
  });

  it('a weight whose shape the model cannot take is refused before its values are read', async () => {
    const file = join(tempDir(), 'wide.h5');
    // 1e8 values (400 MB as float32) in a file of a few MB: reading them first would show in the process's memory.
    await hugeDataset(file, [10_000, 10_000]);
    const before = process.memoryUsage().rss;
    const r = await run(['--model', file]);
    const grown = process.memoryUsage().rss - before;
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Shape mismatch for 'Conv1\/kernel' in .*wide\.h5: the model expects \[3, 3, 3, 16\], the weights have \[10000, 10000\]/);
    expect(grown).toBeLessThan(200 * 2 ** 20);
  });
});
