// Data and options that look fine but are not: said clearly, never trained on silently.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const quick = ['--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--epochs', '1', '--workers', '1', '--engine', 'tfjs'];

beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
});

describe('numbers and names in options', () => {
  it('refuses hex, blank and word numbers, saying what was received', async () => {
    const hex = await runCli(['finetune', data, ...quick, '--batch-size', '0x10'], env);
    expect(hex.exitCode).toBe(2);
    expect(hex.stderr).toContain('Invalid --batch-size: expected a number, received "0x10"');
    const blank = await runCli(['finetune', data, ...quick, '--lr', ' '], env);
    expect(blank.exitCode).toBe(2);
    const file = join(tempDir(), 'cfg.json');
    writeFileSync(file, JSON.stringify({ epochs: 'two' }));
    const word = await runCli(['finetune', data, '--config', file], env);
    expect(word.exitCode).toBe(2);
    expect(word.stderr).toContain(`--config ${file}: key 'epochs': expected "auto" or a number, received "two"`);
    const zero = await runCli(['finetune', data, ...quick, '--epochs', '0'], env);
    expect(zero.exitCode).toBe(2);
    expect(zero.stderr).toContain('--epochs');
    const fine = await runCli(['data', data, '--val', '1e-1', '--seed', '7', '--json'], env);
    expect(fine.exitCode, fine.stderr).toBe(0);
  });

  it('an unknown TL_BACKEND is a usage error (exit 2)', async () => {
    const r = await runCli(['finetune', data, ...quick], { ...env, TL_BACKEND: 'foo' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('TL_BACKEND=foo is not a backend');
  });
});

describe('datasets that cannot train as they are', () => {
  it('--max-pixels that skips every image says so, with the fix', async () => {
    const r = await runCli(['finetune', data, ...quick, '--max-pixels', '100'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: None of the 16 images in ${data} could be used: 16 too many pixels.`);
    expect(r.stderr).toContain('Raise --max-pixels');
  });

  it('a class whose every file fails to decode is an error naming it', async () => {
    const root = tempDir();
    cpSync(data, root, { recursive: true });
    mkdirSync(join(root, 'broken'));
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer();
    for (let i = 0; i < 3; i++) writeFileSync(join(root, 'broken', `b${i}.png`), png.subarray(0, 40));
    const r = await runCli(['finetune', root, ...quick], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: Class 'broken' (3 cannot decode) in ${root} has no image that decodes.`);
  });

  it('a rare class missing from val and test is warned about, kept in the report, and imbalance suggests class weights', async () => {
    const root = tempDir();
    await makeColourDataset(root, 2, 45, 16);
    const rare = tempDir();
    await makeColourDataset(rare, 3, 3, 16);
    cpSync(join(rare, 'class2'), join(root, 'rare'), { recursive: true });
    const out = join(tempDir(), 'run');
    const r = await runCli(['finetune', root, '--freeze', 'all', '--lr', '0.01', '--epochs', '3', '--input-size', '32', '--workers', '1', '--out', out, '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(out);
    const expected = [
      "class 'rare' has no validation images: validation loss, early stopping and the best epoch do not cover it",
      "class 'rare' has no test images: the test metrics do not cover it",
      "the classes are heavily imbalanced (31 training images of 'class0', 3 of 'rare'); --class-weight balanced weighs them evenly",
    ];
    // Besides these, a short run may say that validation was still improving.
    expect((JSON.parse(r.stdout) as { warnings: string[] }).warnings.filter((w) => !w.startsWith('val_loss was still improving'))).toEqual(expected);
    for (const w of expected) expect(r.stderr).toContain(`notice: ${w}\n`);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(`**Warning:** ${expected[1]}.`);
  });
});

describe('files that are not what they seem', () => {
  it('a named pipe called like an image is listed as skipped, not ignored', async (ctx) => {
    const root = tempDir();
    cpSync(data, root, { recursive: true });
    if (spawnSync('mkfifo', [join(root, 'class0', 'pipe.png')]).status !== 0) return ctx.skip('mkfifo is not available');
    const r = await runCli(['data', root], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${join(root, 'class0', 'pipe.png')}: not a regular file (a named pipe)`);
  });

  it('tl extract on a folder that is not a dataset says so before extracting plain images', async () => {
    const root = tempDir();
    cpSync(join(data, 'class0'), join(root, 'only'), { recursive: true });
    const out = join(tempDir(), 'f.csv');
    const r = await runCli(['extract', root, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--format', 'csv', '--engine', 'tfjs', '--workers', '1', '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`notice: ${root} is not a dataset folder (Only one class ('only') in ${root}; a classifier needs at least two class folders); extracting its images without class or split\n`);
  });
});
