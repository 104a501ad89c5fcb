import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type BackendInfo, type Tf } from '../../src/backend/index.js';
import { fitTemperature, temper, temperatureDecision } from '../../src/metrics/calibration.js';
import { loadClassifier } from '../../src/inference/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { randomArray } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

/** Row-wise softmax of logits / t, in float64. */
function softmax(logits: ArrayLike<number>, k: number, t = 1): number[] {
  const out: number[] = [];
  for (let i = 0; i < logits.length; i += k) {
    const row = Array.from({ length: k }, (_, c) => logits[i + c]! / t);
    const max = Math.max(...row);
    const e = row.map((v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((v) => v / sum));
  }
  return out;
}

describe('temperature scaling', () => {
  // Labels drawn from softmax(z); the model reports softmax(3z): overconfident by a temperature of 3.
  const k = 4;
  const n = 2000;
  const z = Array.from(randomArray(n * k, 11), (v) => v * 2);
  const truth = softmax(z, k);
  const u = randomArray(n, 12);
  const labels = Int32Array.from({ length: n }, (_, i) => {
    let acc = 0;
    for (let c = 0; c < k; c++) if ((acc += truth[i * k + c]!) >= (u[i]! + 1) / 2) return c;
    return k - 1;
  });
  const overconfident = Float32Array.from(softmax(z.map((v) => v * 3), k));

  it('recovers the temperature that generated the labels and minimises the log-loss (brute force over a grid)', () => {
    const fit = fitTemperature(overconfident, labels, k);
    expect(fit.temperature).toBeGreaterThan(2.7);
    expect(fit.temperature).toBeLessThan(3.3);
    // An independent minimum: log-loss of softmax(3z / t) over t on a fine grid.
    const scaled = z.map((v) => v * 3);
    const nll = (t: number) => {
      const p = softmax(scaled, k, t);
      return -labels.reduce((a, y, i) => a + Math.log(p[i * k + y]!), 0) / n;
    };
    let best = { t: 0, loss: Infinity };
    for (let t = 2.5; t <= 3.5; t += 0.002) if (nll(t) < best.loss) best = { t, loss: nll(t) };
    expect(Math.abs(fit.temperature - best.t)).toBeLessThan(3e-3);
    expect(fit.logLossAfter).toBeCloseTo(best.loss, 5);
    expect(fit.logLossBefore).toBeCloseTo(nll(1), 5);
    expect(fit.logLossAfter).toBeLessThan(fit.logLossBefore);
  });

  it('temper(softmax(z), T) is softmax(z / T)', () => {
    const probs = Float32Array.from(softmax(z.slice(0, 400), k));
    const expected = softmax(z.slice(0, 400), k, 2.5);
    const got = temper(probs, k, 2.5);
    expected.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
  });
});

describe('whether a fitted temperature is applied', () => {
  const fit = { fitted: 1.6, images: 45, errors: 4, logLossBefore: 0.4, logLossAfter: 0.3, eceBefore: 0.08, eceAfter: 0.05 };
  it('applies a temperature inside the range that lowers log-loss and does not raise ECE beyond noise', () => {
    expect(temperatureDecision(fit)).toEqual({ applied: true, reason: 'it lowers the validation log-loss from 0.4000 to 0.3000 (ECE 0.0800 -> 0.0500) on 45 images with 4 mistakes' });
    expect(temperatureDecision({ ...fit, eceAfter: 0.08 + 0.4 / 45 }).applied).toBe(true);
  });
  it('refuses one fitted on too few images, on an error-free split, at a bound of the search, or raising ECE', () => {
    expect(temperatureDecision({ ...fit, images: 19 })).toMatchObject({ applied: false, reason: 'the validation split has 19 images; a temperature needs at least 20' });
    expect(temperatureDecision({ ...fit, errors: 0 }).reason).toMatch(/^no validation image is misclassified/);
    expect(temperatureDecision({ ...fit, fitted: 0.05 })).toMatchObject({ applied: false, reason: 'the fitted temperature 0.050 is at the edge of the search range [0.05, 20]' });
    expect(temperatureDecision({ ...fit, fitted: 19.99 }).applied).toBe(false);
    // The bundled sample's case: validation ECE 0.0696 -> 0.0887 on 45 images.
    expect(temperatureDecision({ ...fit, eceBefore: 0.0696, eceAfter: 0.0887 })).toMatchObject({ applied: false, reason: 'a temperature of 1.600 would raise the validation ECE from 0.0696 to 0.0887 (its log-loss 0.4000 -> 0.3000)' });
  });
  it('a perfectly separated split drives the fit to the bound (what the decision guards against)', () => {
    const probs = Float32Array.from({ length: 60 }, (_, i) => (i % 3 === Math.floor(i / 3) % 3 ? 0.9 : 0.05));
    const labels = Array.from({ length: 20 }, (_, i) => i % 3);
    expect(fitTemperature(probs, labels, 3).temperature).toBeCloseTo(0.05, 5);
  });
});

describe('calibration in a fine-tune', () => {
  let tf: Tf;
  let info: BackendInfo;
  const data = tempDir();
  const store = tempDir();
  beforeAll(async () => {
    ({ tf, info } = await loadBackend({ choice: 'wasm' }));
    // Every sixth image under the next class's folder: a validation split (21 images) with mistakes to calibrate on.
    await makeColourDataset(data, 3, 28, 32);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 28; i += 6) await rename(join(data, `class${c}`, `img${i}.png`), join(data, `class${(c + 1) % 3}`, `moved${c}-${i}.png`));
  });
  const options = (out: string, calibrate: 'temperature' | 'none'): FinetuneOptions => finetuneOptions(data, out, { store, freeze: 'all', epochs: 8, batchSize: 8, lr: 0.03, calibrate, val: 0.25, test: 0.25, seed: 3, engine: 'tfjs' });

  it('folds the temperature into the saved classifier: same predictions, tempered probabilities, in tfjs and model.onnx', async () => {
    const plainDir = tempDir();
    const calibratedDir = tempDir();
    const before = tf.memory().numTensors;
    const plain = await finetune(tf, info, options(plainDir, 'none'));
    const calibrated = await finetune(tf, info, options(calibratedDir, 'temperature'));
    expect(tf.memory().numTensors).toBe(before);
    expectLearned(plain.history, 3);
    expect(plain.calibration).toBeNull();
    const c = calibrated.calibration!;
    expect(c.applied, c.reason).toBe(true);
    expect(c.temperature).not.toBeCloseTo(1, 2);
    expect(c.val.logLossAfter).toBeLessThanOrEqual(c.val.logLossBefore + 1e-9);
    // The test metrics' log-loss before calibration is the uncalibrated run's.
    expect(c.test!.logLossBefore).toBeCloseTo(plain.metrics!.logLoss, 4);
    expect(c.test!.logLossAfter).toBeCloseTo(calibrated.metrics!.logLoss, 6);
    expect(calibrated.metrics!.accuracy).toBe(plain.metrics!.accuracy);
    expect(calibrated.test!.loss).toBe(calibrated.metrics!.logLoss);

    // The saved models, run on the same images: calibrated = temper(plain, T).
    const x = tf.randomUniform([5, 64, 64, 3], 0, 1, 'float32', 4);
    const a = await loadClassifier(tf, plainDir);
    const b = await loadClassifier(tf, calibratedDir);
    const pa = tf.tidy(() => (a.model.predict(x) as ReturnType<Tf['tensor']>).dataSync() as Float32Array);
    const pb = tf.tidy(() => (b.model.predict(x) as ReturnType<Tf['tensor']>).dataSync() as Float32Array);
    a.dispose();
    b.dispose();
    x.dispose();
    const expected = temper(pa, 3, c.temperature);
    expected.forEach((v, i) => expect(pb[i]).toBeCloseTo(v, 5));

    const meta = JSON.parse(await readFile(join(calibratedDir, 'model', 'model.json'), 'utf8')) as { userDefinedMetadata: { tl: { temperature: number } } };
    expect(meta.userDefinedMetadata.tl.temperature).toBe(c.temperature);
    const props = Object.fromEntries(onnx.ModelProto.decode(await readFile(join(calibratedDir, 'model.onnx'))).metadataProps.map((p) => [p.key, p.value]));
    expect(JSON.parse(props['tl.labels']!)).toEqual(calibrated.classes);
    expect(Number(props['tl.temperature'])).toBe(c.temperature);
    expect(props['tl.preprocess']).toBe('raw01');
    expect(props['tl.input']).toContain('[N, 64, 64, 3]');
    const report = await readFile(join(calibratedDir, 'report.md'), 'utf8');
    expect(report).toContain(`Calibrated with temperature ${c.temperature.toFixed(3)}`);
  });

  it('leaves a model uncalibrated when no validation image is misclassified, saying why', async () => {
    const clean = tempDir();
    await makeColourDataset(clean, 3, 28, 32);
    const run = (calibrate: 'temperature' | 'none') => finetune(tf, info, { ...options(tempDir(), calibrate), data: clean, epochs: 3, lr: 0.01 });
    const plain = await run('none');
    const checked = await run('temperature');
    expectLearned(checked.history, 3);
    expect(checked.calibration).toMatchObject({ applied: false, temperature: 1 });
    expect(checked.calibration!.fitted).toBeLessThan(0.06);
    expect(checked.calibration!.reason).toMatch(/^no validation image is misclassified/);
    // Nothing folded in: the same probabilities as a run that never calibrated.
    expect(checked.metrics).toEqual(plain.metrics);
    const props = Object.fromEntries(onnx.ModelProto.decode(await readFile(join(checked.outDir, 'model.onnx'))).metadataProps.map((p) => [p.key, p.value]));
    expect(props['tl.temperature']).toBe('none');
    expect(await readFile(join(checked.outDir, 'report.md'), 'utf8')).toContain('Not calibrated: no validation image is misclassified');
  });
});
