import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { exportedGraph } from '../../src/engine/index.js';
import { loadBackend } from '../../src/backend/index.js';
import { buildVariant } from '../../src/registry/index.js';
import { tempDir } from '../helpers/tmp.js';

const DAY = 86_400_000;

function file(path: string, bytes: number, ageDays = 0): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, Buffer.alloc(bytes));
  const t = new Date(Date.now() - ageDays * DAY);
  utimesSync(path, t, t);
}

describe('tl store', () => {
  it('lists what the store holds; prune removes old ONNX graphs, then all of them, and weights only when asked', async () => {
    const home = tempDir();
    const env = { ...process.env, TL_HOME: home };
    file(join(home, 'onnx', 'aaa.onnx'), 1000, 90);
    file(join(home, 'onnx', 'aaa.onnx.sha256'), 65, 90);
    file(join(home, 'onnx', 'bbb.onnx'), 2000, 1);
    file(join(home, 'weights', 'keras', 'resnet50_notop.h5'), 5000, 200);
    file(join(home, 'weights', 'nsfwjs-4.4.0', 'mobilenet_v2', 'model.json'), 300, 5);
    const listed = JSON.parse((await runCli(['store', '--json'], env)).stdout) as { bytes: number; entries: { kind: string; name: string; bytes: number }[] };
    expect(listed.entries.map((e) => [e.kind, e.name, e.bytes])).toEqual([
      ['keras', 'weights/keras/resnet50_notop.h5', 5000],
      ['nsfwjs', 'weights/nsfwjs-4.4.0', 300],
      ['onnx', 'onnx/aaa.onnx', 1065],
      ['onnx', 'onnx/bbb.onnx', 2000],
    ]);
    expect(listed.bytes).toBe(8365);

    const dry = await runCli(['store', 'prune', '--dry-run'], env);
    expect(dry.stdout).toContain('would remove onnx/aaa.onnx');
    expect(existsSync(join(home, 'onnx', 'aaa.onnx'))).toBe(true);
    const old = await runCli(['store', 'prune'], env);
    expect(old.exitCode, old.stderr).toBe(0);
    expect(existsSync(join(home, 'onnx', 'aaa.onnx'))).toBe(false);
    expect(existsSync(join(home, 'onnx', 'aaa.onnx.sha256'))).toBe(false);
    expect(existsSync(join(home, 'onnx', 'bbb.onnx'))).toBe(true);
    await runCli(['store', 'prune', '--onnx'], env);
    expect(existsSync(join(home, 'onnx', 'bbb.onnx'))).toBe(false);
    expect(existsSync(join(home, 'weights', 'keras', 'resnet50_notop.h5'))).toBe(true);
    await runCli(['store', 'prune', '--weights'], env);
    expect(existsSync(join(home, 'weights', 'keras', 'resnet50_notop.h5'))).toBe(false);
    // The nsfwjs extraction is rebuilt from the npm package by tl itself; prune leaves it.
    expect(existsSync(join(home, 'weights', 'nsfwjs-4.4.0', 'mobilenet_v2', 'model.json'))).toBe(true);
  });

  it('using a cached ONNX graph marks it used, so prune keeps it', async () => {
    const { tf } = await loadBackend({ choice: 'wasm' });
    const home = tempDir();
    const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 32 });
    const { path } = await exportedGraph(model, home);
    const old = new Date(Date.now() - 60 * DAY);
    utimesSync(path, old, old);
    await exportedGraph(model, home);
    model.dispose();
    await runCli(['store', 'prune'], { ...process.env, TL_HOME: home });
    expect(existsSync(path)).toBe(true);
  });
});
