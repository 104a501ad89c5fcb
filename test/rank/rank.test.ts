import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { RankResult } from '../../src/rank/index.js';
import { logme, transrate } from '../../src/metrics/transferability.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

beforeAll(async () => {
  await makeColourDataset(data, 3, 8, 32);
});

describe('the linear probe', () => {
  it('separates separable features and not shuffled labels, with no tensor left behind', async () => {
    const { loadBackend } = await import('../../src/backend/index.js');
    const { linearProbe } = await import('../../src/rank/probe.js');
    const { randomArray } = await import('../helpers/tensors.js');
    const { tf } = await loadBackend({ choice: 'wasm' });
    const n = 90;
    const d = 16;
    const means = randomArray(3 * d, 1);
    const noise = randomArray(2 * n * d, 2);
    const labels = Int32Array.from({ length: 2 * n }, (_, i) => i % 3);
    const all = Float32Array.from({ length: 2 * n * d }, (_, k) => means[labels[Math.floor(k / d)]! * d + (k % d)]! + 0.5 * noise[k]!);
    const train = { data: all.subarray(0, n * d), n, d };
    const val = { data: all.subarray(n * d), n, d };
    const before = tf.memory().numTensors;
    const good = await linearProbe(tf, train, labels.subarray(0, n), val, labels.subarray(n), 3, 1);
    const keys = randomArray(n, 9);
    const shuffled = Int32Array.from([...Array(n).keys()].sort((a, b) => keys[a]! - keys[b]!).map((i) => labels[i]!));
    const bad = await linearProbe(tf, train, shuffled, val, labels.subarray(n), 3, 1);
    expect(tf.memory().numTensors).toBe(before);
    expect(good.valAccuracy).toBeGreaterThan(0.95);
    expect(bad.valAccuracy).toBeLessThan(0.6);
    expect(good.valLoss).toBeLessThan(bad.valLoss);
  });
});

describe('tl rank', () => {
  it('scores each model on the training split, best LogME first, the scores those of `tl extract` features', async () => {
    const r = await runCli(['rank', data, '--models', 'inception_v3.nsfwjs,mobilenet_v2.nsfwjs', '--seed', '3', '--probe', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as RankResult;
    expect(result.classes).toEqual(['class0', 'class1', 'class2']);
    expect(result.rows.map((row) => row.model).sort()).toEqual(['inception_v3.nsfwjs', 'mobilenet_v2.nsfwjs']);
    expect(result.rows[0]!.logme).toBeGreaterThanOrEqual(result.rows[1]!.logme);
    // Both keep the classifier they were trained with, so both have a LEEP score (a log-probability: at most 0).
    for (const row of result.rows) expect(row.leep!).toBeLessThan(0);
    // The colour classes are separable in either model's features: the linear probe validates well above chance.
    for (const row of result.rows) expect(row.probe!.valAccuracy, row.model).toBeGreaterThan(0.8);
    expect(Object.fromEntries(result.rows.map((row) => [row.model, [row.featureSize, row.inputSize]]))).toEqual({ 'mobilenet_v2.nsfwjs': [1280, 224], 'inception_v3.nsfwjs': [2048, 299] });

    // The same split's training images through `tl extract`, scored here: the same LogME and TransRate.
    const out = join(tempDir(), 'features.jsonl');
    const e = await runCli(['extract', data, '--model', 'mobilenet_v2.nsfwjs', '--seed', '3', '--engine', 'onnx', '--format', 'jsonl', '--out', out], env);
    expect(e.exitCode, e.stderr).toBe(0);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { class: string; split: string; features: number[] }).filter((row) => row.split === 'train');
    expect(rows).toHaveLength(result.images);
    const d = rows[0]!.features.length;
    const f = { data: Float32Array.from(rows.flatMap((row) => row.features)), n: rows.length, d };
    const labels = Int32Array.from(rows, (row) => result.classes.indexOf(row.class));
    const mine = result.rows.find((row) => row.model === 'mobilenet_v2.nsfwjs')!;
    expect(relative(mine.logme, logme(f, labels))).toBeLessThan(1e-4);
    expect(relative(mine.transrate, transrate(f, labels))).toBeLessThan(1e-4);
  });

  it('a table on a terminal; a model that does not exist is one clear error', async () => {
    const r = await runCli(['rank', data, '--models', 'mobilenet_v2.nsfwjs', '--input-size', '96'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/│ 1 +│ mobilenet_v2\.nsfwjs │ -?\d+\.\d{4} +│ -?\d+\.\d{2} +│ - +│ 1280 +│ 96 +│/);
    const bad = await runCli(['rank', data, '--models', 'mobilenet_v2.nsfwjs,resnet51'], env);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/Unknown model 'resnet51'/);
  });
});
