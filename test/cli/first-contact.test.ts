// What a new user meets in the first runs: exports that carry the run's labels and preprocessing, hints that train
// what they say, advice for augmentation, a negative --freeze, --max-pixels on predict, and which models rank skips.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const quick = ['--model', 'mobilenet_v2.nsfwjs', '--input-size', '64', '--workers', '1', '--seed', '3'];
let run: string;

const props = (file: string) => Object.fromEntries(onnx.ModelProto.decode(readFileSync(file)).metadataProps.map((p) => [p.key, p.value]));

beforeAll(async () => {
  await makeColourDataset(data, 3, 12, 32);
  run = join(tempDir(), 'run');
  const r = await runCli(['finetune', data, ...quick, '--freeze', 'all', '--epochs', '3', '--lr', '0.01', '--out', run], env);
  expect(r.exitCode, r.stderr).toBe(0);
  expectRunLearned(run);
}, 120_000);

describe('a new user’s first runs', () => {
  it('tl export carries the run’s labels and preprocessing: ONNX metadata as in its model.onnx, labels.json beside the tfjs model', async () => {
    const file = join(tempDir(), 'exported.onnx');
    const o = await runCli(['export', run, '--format', 'onnx', '--out', file], env);
    expect(o.exitCode, o.stderr).toBe(0);
    const own = props(join(run, 'model.onnx'));
    const exported = props(file);
    for (const key of ['tl.labels', 'tl.preprocess', 'tl.preprocess.formula', 'tl.input', 'tl.temperature']) expect(exported[key], key).toBe(own[key]);
    expect(JSON.parse(exported['tl.labels']!)).toEqual(['class0', 'class1', 'class2']);
    const folder = join(tempDir(), 'tfjs');
    const t = await runCli(['export', run, '--format', 'tfjs', '--out', folder], env);
    expect(t.exitCode, t.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(folder, 'labels.json'), 'utf8'))).toEqual(JSON.parse(readFileSync(join(run, 'labels.json'), 'utf8')));
  });

  it('after --head-epochs, the "trains on" hint gives --epochs that train the number of epochs it says', async () => {
    const out = join(tempDir(), 'two-phase');
    const r = await runCli(['finetune', data, ...quick, '--head-epochs', '1', '--freeze', '100', '--epochs', '2', '--lr', '1e-4', '--finetune-lr', '1e-5', '--calibrate', 'none', '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const hint = /`tl finetune --resume (\S+) --epochs (\d+)` trains (\d+) more/.exec(r.stderr);
    expect(hint, r.stderr).not.toBeNull();
    const resumed = await runCli(['finetune', '--resume', hint![1]!, '--epochs', hint![2]!, '--json'], env);
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect((JSON.parse(resumed.stdout) as { history: unknown[] }).history).toHaveLength(3 + Number(hint![3]));
  });

  it('augmentation makes --epochs auto 10 and says so; a negative --freeze is refused as a count', async () => {
    const aug = await runCli(['finetune', data, ...quick, '--freeze', '100', '--augment', 'light', '--epochs', 'auto', '--json', '--out', join(tempDir(), 'aug')], env);
    expect(aug.exitCode, aug.stderr).toBe(0);
    expect(aug.stderr).toContain('notice: --epochs auto is 10 with --augment light (3 without)');
    expect((JSON.parse(aug.stdout) as { history: unknown[] }).history).toHaveLength(10);
    const neg = await runCli(['finetune', data, ...quick, '--freeze', '-3', '--out', join(tempDir(), 'neg')], env);
    expect(neg.exitCode).toBe(2);
    expect(neg.stderr).toMatch(/--freeze -3: a layer count is a whole number from 0 to \d+/);
  });

  it('tl predict --max-pixels skips an image above it, naming it', async () => {
    const big = join(tempDir(), 'big.png');
    await sharp({ create: { width: 300, height: 300, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toFile(big);
    const r = await runCli(['predict', big, join(data, 'class0', 'img0.png'), '--model', run, '--max-pixels', '10000', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { predictions: unknown[]; skipped: { path: string; reason: string }[] };
    expect(result.predictions).toHaveLength(1);
    expect(result.skipped).toEqual([{ path: big, reason: expect.stringMatching(/too many pixels/) }]);
  });

  it('tl rank names the registry models it leaves out for want of their weights', async () => {
    const r = await runCli(['rank', data, '--input-size', '75', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { rows: { model: string }[]; notRanked: string[] };
    expect(result.notRanked).toContain('resnet50');
    expect(result.rows.map((row) => row.model)).not.toContain('resnet50');
    const text = await runCli(['rank', data, '--input-size', '75', '--models', 'mobilenet_v2.nsfwjs'], env);
    expect(text.stderr).not.toContain('not ranked');
  });
});
