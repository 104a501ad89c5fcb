import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { finetune, lrFind, type FinetuneOptions } from '../../src/train/finetune.js';
import { rangeRate, rangeTest, suggestLr, textPlot } from '../../src/train/lr-find.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

describe('the range test', () => {
  const spec = { minLr: 1e-7, maxLr: 10, steps: 100 };

  it('grows the rate exponentially from the first rate to the last', () => {
    expect(rangeRate(spec, 0)).toBe(1e-7);
    expect(rangeRate(spec, 99)).toBeCloseTo(10, 10);
    expect(rangeRate(spec, 33) / rangeRate(spec, 32)).toBeCloseTo(rangeRate(spec, 80) / rangeRate(spec, 79), 12);
  });

  it('suggests a rate between the steepest descent of the loss and its minimum, and stops when the loss diverges', async () => {
    // A loss that falls fastest at 1e-3 (a logistic step in log10(rate)), bottoms out near 1e-1, then explodes.
    const loss = (lr: number) => {
      const x = Math.log10(lr);
      return 1 + 1 / (1 + Math.exp(3 * (x + 3))) + (x > -1 ? 10 ** (2 * (x + 1)) - 1 : 0);
    };
    const r = await rangeTest(spec, async (lr) => loss(lr));
    expect(r.stoppedEarly).toMatch(/^the smoothed loss passed 4x its minimum at rate/);
    expect(r.lrs.length).toBeLessThan(spec.steps);
    expect(r.lrs.at(-1)!).toBeGreaterThan(0.1);
    // Centred smoothing does not lag: the suggestion is the steepest point, to the grid's resolution (12 steps a decade).
    expect(Math.abs(Math.log10(r.suggestion) + 3)).toBeLessThan(0.1);
    expect(textPlot(r)).toContain(`| marks the suggestion ${r.suggestion.toExponential(2)}`);
  });

  it('a loss that never falls, or is not finite, is said', async () => {
    expect(() => suggestLr([1e-3, 1e-2, 1e-1, 1], [1, 2, 3, 4])).toThrow(/the loss did not fall over the range test/);
    const r = await rangeTest(spec, async (lr) => (lr > 1e-3 ? NaN : 2 - lr * 100));
    expect(r.stoppedEarly).toMatch(/^the loss became NaN at rate/);
  });
});

describe('--lr find and tl lr-find', () => {
  let tf: Tf;
  let info: BackendInfo;
  const data = tempDir();
  const store = tempDir();
  beforeAll(async () => {
    ({ tf, info } = await wasmWithColourData(data, 3, 12, 32));
  });
  const options = (out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => finetuneOptions(data, out, { store, freeze: 100, epochs: 3, batchSize: 6, lr: 'find', lrFindSteps: 40, minLr: 1e-6, maxLr: 1, calibrate: 'none', val: 0.2, test: 0, seed: 8, engine: 'onnx', ...extra });

  // On tfjs the range test moves the model's own variables; on ONNX Runtime its copies.
  for (const engine of ['onnx', 'tfjs'] as const) it(`trains at the suggestion exactly as a run given that rate: the range test leaves no trace in the weights or optimizer (${engine})`, async () => {
    const before = tf.memory().numTensors;
    const found = await finetune(tf, info, options(tempDir(), { engine }));
    const config = JSON.parse(readFileSync(join(found.outDir, 'config.json'), 'utf8')) as { lr: number; lrFind: { suggestion: number; steps: number } };
    expect(config.lr).toBe(config.lrFind.suggestion);
    expect(found.phases[0]!.lr).toBe(config.lr);
    expect(existsSync(join(found.outDir, 'lr-find.svg'))).toBe(true);
    const given = await finetune(tf, info, options(tempDir(), { engine, lr: config.lr }));
    expect(tf.memory().numTensors).toBe(before);
    expectLearned(found.history, 3, `the run at the suggestion ${config.lr}`);
    found.history.forEach((row, i) => {
      expect(Math.abs(row.loss - given.history[i]!.loss) / given.history[i]!.loss, `epoch ${row.epoch}`).toBeLessThan(1e-5);
      expect(row.val_loss).toBeCloseTo(given.history[i]!.val_loss!, 5);
    });
  });

  it('tl lr-find writes the curve and suggests a rate; the same on the tfjs engine', async () => {
    const onnx = await lrFind(tf, info, options(tempDir()));
    const tfjs = await lrFind(tf, info, options(tempDir(), { engine: 'tfjs' }));
    // The suggestion is a rate the test took, before the smoothed loss's minimum, where that loss falls.
    const at = onnx.lrs.indexOf(onnx.suggestion);
    const lowest = onnx.smoothed.indexOf(Math.min(...onnx.smoothed));
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(lowest);
    expect(onnx.smoothed[at + 1]!).toBeLessThan(onnx.smoothed[at - 1]!);
    expect(onnx.suggestion).toBe(suggestLr(onnx.lrs, onnx.smoothed));
    // The engines agree to float32 noise on every step's loss while the rate is small (large rates amplify it).
    const small = onnx.lrs.filter((lr) => lr <= 1e-4).length;
    expect(small).toBeGreaterThan(10);
    for (let i = 0; i < small; i++) expect(Math.abs(onnx.losses[i]! - tfjs.losses[i]!) / tfjs.losses[i]!, `step ${i}`).toBeLessThan(1e-4);
    const saved = JSON.parse(readFileSync(onnx.files.json, 'utf8')) as { suggestion: number; lrs: number[] };
    expect(saved.suggestion).toBe(onnx.suggestion);
    expect(readFileSync(onnx.files.svg, 'utf8')).toMatch(/^<svg/);

    const out = join(tempDir(), 'find');
    const r = await runCli(['lr-find', data, '--input-size', '64', '--batch-size', '6', '--lr-find-steps', '30', '--out', out], { ...process.env, TL_HOME: store });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/suggested --lr \d/);
    expect(r.stdout).toContain('| marks the suggestion');
    expect(existsSync(join(out, 'lr-find.svg'))).toBe(true);
    expect(existsSync(join(out, 'model'))).toBe(false);
  });
});
