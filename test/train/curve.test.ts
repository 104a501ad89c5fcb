// tl curve: fine-tunes on nested subsets with one fixed test split, and a power law fitted to what they score.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fitPowerLaw, parseCurveSizes, powerLawAccuracy, type CurveResult } from '../../src/train/curve.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

describe('fitPowerLaw', () => {
  it('recovers an error curve a n^-b + c from its points, and extrapolates it', () => {
    const law = { a: 0.8, b: 0.5, c: 0.05 };
    const points = [5, 10, 20, 50, 100].map((x) => ({ x, y: law.a * x ** -law.b + law.c }));
    const fit = fitPowerLaw(points)!;
    expect(fit.b).toBeCloseTo(0.5, 1);
    expect(fit.c).toBeCloseTo(0.05, 2);
    expect(powerLawAccuracy(fit, 200)).toBeCloseTo(1 - (law.a * 200 ** -law.b + law.c), 2);
    expect(fitPowerLaw(points.slice(0, 2))).toBeNull();
  });

  it('parses --sizes and refuses what is not a size', () => {
    expect(parseCurveSizes('5, 10,all')).toEqual([5, 10, 'all']);
    expect(() => parseCurveSizes('5,0')).toThrow(/--sizes 5,0/);
  });
});

describe('tl curve', () => {
  it('trains at each size on nested subsets, tests every run on the same split, and writes the curve', async () => {
    const data = tempDir();
    const home = tempDir();
    const out = join(tempDir(), 'curve');
    await makeColourDataset(data, 3, 20, 32);
    const r = await runTl(['curve', data, '--sizes', '2,4,all', '--epochs', '1', '--freeze', 'all', '--input-size', '32', '--batch-size', '4', '--out', out, '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as CurveResult;
    // 20 per class: 3 test and 3 validation images each (0.15), 14 left to train on.
    expect(result.testImages).toBe(9);
    expect(result.points.map((p) => [p.size, p.images])).toEqual([[2, 6], [4, 12], ['all', 42]]);
    expect(result.points.every((p) => p.testAccuracy >= 0 && p.testAccuracy <= 1)).toBe(true);
    expect(result.arms).toHaveLength(1);
    expect(result.arms[0]!.start).toBe(result.points[0]!.testAccuracy);
    // The run folders and labels files of the subsets are gone; the curve's files stay, and agree with --json.
    expect(readdirSync(out).sort()).toEqual(['curve.json', 'curve.md', 'curve.svg']);
    expect(JSON.parse(readFileSync(join(out, 'curve.json'), 'utf8'))).toEqual(result);
    expect(readFileSync(join(out, 'curve.svg'), 'utf8')).toMatch(/^<svg/);
    expect(readFileSync(join(out, 'curve.md'), 'utf8')).toContain('| 14.0 (all) |');
    expect(existsSync(join(out, 'runs'))).toBe(false);
  }, 180_000);

  it('refuses --resume and a curve with no test split', async () => {
    const data = tempDir();
    await makeColourDataset(data, 2, 6, 32);
    const noTest = await runTl(['curve', data, '--test', '0', '--epochs', '1', '--out', join(tempDir(), 'c')], { TL_HOME: tempDir() });
    expect(noTest.exitCode).toBe(2);
    expect(noTest.stderr).toContain('--test must hold some images out');
    const resume = await runTl(['curve', '--resume', tempDir()], { TL_HOME: tempDir() });
    expect(resume.exitCode).toBe(2);
    expect(resume.stderr).toContain('tl curve starts from the model, not from a run: --resume does not apply.');
  });
});
