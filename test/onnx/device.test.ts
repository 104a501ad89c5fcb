// --device: where ONNX Runtime runs; providers that cannot load are errors or fall back to the CPU, saying why.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { cudaUnusable, OnnxSession } from '../../src/onnx/runtime.js';
import { exportOnnx } from '../../src/onnx/export.js';
import { loadBackend, type SymbolicTensor, type Tf } from '../../src/backend/index.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  await makeColourDataset(data, 2, 6, 32);
});

const extractArgs = (out: string) => ['extract', data, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--workers', '1', '--out', out];

describe('--device', () => {
  it('an explicit --device cuda that cannot load is an error saying why, before any work', async (ctx) => {
    const why = cudaUnusable();
    if (why === null) return ctx.skip('the CUDA provider loads on this machine');
    const out = join(tempDir(), 'f.npy');
    const r = await runCli([...extractArgs(out), '--device', 'cuda'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: --device cuda: ${why}.`);
  });

  it('--device webgpu runs on WebGPU where an adapter exists, else falls back to the CPU with a notice', async () => {
    const out = join(tempDir(), 'f.npy');
    const r = await runCli([...extractArgs(out), '--device', 'webgpu'], env);
    // Whether a WebGPU session can be made here (the notice is said once per process: the run above said it).
    const input = tf.input({ shape: [3] });
    const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2 }).apply(input) as SymbolicTensor });
    const session = await OnnxSession.open(exportOnnx(model), { device: 'webgpu' });
    const device = session.device;
    await session.close();
    model.dispose();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/inference engine: onnxruntime [\d.]+ \(webgpu, falling back to cpu\)/);
    if (device === 'cpu') expect(r.stderr).toMatch(/notice: the WebGPU execution provider failed \(.+\); running on the CPU\n/);
    else expect(r.stderr).not.toMatch(/WebGPU execution provider failed/);
  });

  it('--device cpu says so on the first line; a GPU device with the tfjs engine is a usage error', async () => {
    const r = await runCli([...extractArgs(join(tempDir(), 'f.npy')), '--device', 'cpu'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^backend: [^\n]*; inference engine: onnxruntime [\d.]+ \(cpu, \d+ threads\)\n/);
    const bad = await runCli([...extractArgs(join(tempDir(), 'f.npy')), '--device', 'webgpu', '--engine', 'tfjs'], env);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--device webgpu needs the onnx engine');
  });

  it('tl doctor shows each execution provider, usable or not and why', async () => {
    const r = await runCli(['doctor', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const providers = (JSON.parse(r.stdout) as { onnx: { providers: string[] } }).onnx.providers;
    expect(providers[0]).toBe('cpu: usable');
    expect(providers[1]).toMatch(/^cuda: (usable|not usable \(.+\))$/);
    expect(providers[2]).toMatch(/^webgpu: (usable \(--device webgpu\)|not usable \(.+\))$/);
    if (cudaUnusable() !== null) expect(providers[1]).toBe(`cuda: not usable (${cudaUnusable()!})`);
  });
});
