import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runTl } from '../helpers/cli.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');

beforeAll(async () => {
  await makeColourDataset(data, 2, 10, 32);
  const r = await runTl(['finetune', data, '--input-size', '48', '--freeze', 'all', '--lr', '0.01', '--epochs', '4', '--batch-size', '4', '--out', run, '--quiet'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
  expectRunLearned(run);
}, 120_000);

describe('tl eval, predict, extract (spawned)', () => {
  it('finetune wrote report.json, report.md and report.html; eval writes its own beside the run', async () => {
    for (const f of ['report.json', 'report.md', 'report.html']) expect(existsSync(join(run, f)), f).toBe(true);
    const r = await runTl(['eval', '--model', run], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^backend: wasm/);
    expect(r.stdout).toMatch(/the run's test split of .*: \d+ images/);
    expect(r.stdout).toMatch(/accuracy \d+\.\d% · macro F1/);
    expect(r.stdout).toMatch(/│ class0 +│/);
    const report = JSON.parse(readFileSync(join(run, 'eval-test', 'report.json'), 'utf8')) as { kind: string; split: string; schemaVersion: number };
    expect(report).toMatchObject({ kind: 'eval', split: 'test', schemaVersion: 1 });
    expect(readFileSync(join(run, 'eval-test', 'report.html'), 'utf8')).toContain('id="chart-confusion-matrix"');
  });

  it('predict --json lists the top classes of each image', async () => {
    const r = await runTl(['predict', '--model', run, join(data, 'class0', 'img0.png'), join(data, 'class1'), '--top', '2', '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { predictions: { path: string; top: { class: string }[] }[] };
    expect(result.predictions).toHaveLength(11);
    expect(result.predictions[0]!.top.map((t) => t.class).sort()).toEqual(['class0', 'class1']);
  });

  it('extract --format jsonl streams one line per image', async () => {
    const out = join(tempDir(), 'f.jsonl');
    const r = await runTl(['extract', data, '--model', run, '--format', 'jsonl', '--out', out], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    // --engine auto picks ONNX Runtime, which onnxruntime-node ships for this platform.
    expect(r.stderr).toMatch(/^backend: wasm \(simd, 1 thread\); inference engine: onnxruntime 1\.30\.0 \(cpu, \d+ threads\)/);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(20);
    expect((JSON.parse(lines[0]!) as { features: number[] }).features).toHaveLength(1280);
  });

  it('export writes an ONNX file that ONNX Runtime opens, and a tfjs folder', async () => {
    const dir = tempDir();
    const onnx = await runTl(['export', run, '--out', join(dir, 'm.onnx'), '--json'], { TL_HOME: home });
    expect(onnx.exitCode, onnx.stderr).toBe(0);
    expect(JSON.parse(onnx.stdout)).toMatchObject({ format: 'onnx', checked: true, inputShape: [null, 48, 48, 3] });
    expect(existsSync(join(run, 'model.onnx'))).toBe(true);
    const tfjs = await runTl(['export', 'mobilenet_v2_035', '--no-top', '--weights', 'random', '--input-size', '64', '--format', 'tfjs', '--out', join(dir, 'tfjs')], { TL_HOME: home });
    expect(tfjs.exitCode, tfjs.stderr).toBe(0);
    expect(existsSync(join(dir, 'tfjs', 'model.json'))).toBe(true);
  });

  it('bad input: one line naming what is wrong', async () => {
    const noRun = await runTl(['eval', '--model', data], { TL_HOME: home });
    expect(noRun.exitCode).toBe(2);
    expect(noRun.stderr).toContain(`error: ${data} has no split.json, so its held-out images are unknown; pass a DATA folder to evaluate on.`);
    const missing = await runTl(['predict', '--model', run, join(data, 'nope.png')], { TL_HOME: home });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(`No images to predict in ${join(data, 'nope.png')} (${join(data, 'nope.png')}: does not exist)`);
    // A run's dataset recorded relative to where tl finetune ran, evaluated from elsewhere: where to run it, or DATA.
    const moved = join(tempDir(), 'run');
    cpSync(run, moved, { recursive: true });
    const split = JSON.parse(readFileSync(join(moved, 'split.json'), 'utf8')) as { root: string };
    writeFileSync(join(moved, 'split.json'), JSON.stringify({ ...split, root: 'datasets/elsewhere' }));
    const gone = await runTl(['eval', '--model', moved], { TL_HOME: home });
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toContain(`error: The dataset of ${moved} is gone from datasets/elsewhere (the path its split.json records, relative to the folder tl finetune ran in; this is ${process.cwd()}).`);
    expect(gone.stderr).toContain(`pass the dataset: tl eval --model ${moved} DATA.`);
  });
});
