// Mixup and CutMix on a batch: the blend and the pasted box, the ratio the targets take, seeding; the Beta draw; and a
// fine-tune with them on both engines.
import { describe, expect, it } from 'vitest';
import { loadBackend } from '../../src/backend/index.js';
import { mixBatch, mixedTargets } from '../../src/data/mix.js';
import { finetune } from '../../src/train/finetune.js';
import { betaSymmetric, prng } from '../../src/util/random.js';
import { finetuneOptions } from '../helpers/options.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const SIZE = 8;
/** A batch of 3 images, each one flat value: 10, 100, 250. */
const batch = () => Uint8Array.from({ length: 3 * SIZE * SIZE * 3 }, (_, i) => [10, 100, 250][Math.floor(i / (SIZE * SIZE * 3))]!);

describe('mixup and CutMix', () => {
  it('mixup blends image i with image n-1-i at the drawn ratio', () => {
    const m = mixBatch(batch(), 3, SIZE, { mixup: 0.8, cutmix: 0 }, prng(1), () => 0.7);
    expect(m.kind).toBe('mixup');
    expect(m.lam).toBe(0.7);
    expect([m.pixels[0], m.pixels[SIZE * SIZE * 3], m.pixels[2 * SIZE * SIZE * 3]]).toEqual([Math.round(0.7 * 10 + 0.3 * 250), 100, Math.round(0.7 * 250 + 0.3 * 10)]);
  });

  it("CutMix pastes one box of the partner; the ratio becomes the share left uncovered", () => {
    const m = mixBatch(batch(), 3, SIZE, { mixup: 0, cutmix: 1 }, prng(4), () => 0.75);
    expect(m.kind).toBe('cutmix');
    const first = m.pixels.subarray(0, SIZE * SIZE * 3);
    const pasted = first.filter((v, i) => i % 3 === 0 && v === 250).length;
    expect(pasted).toBeGreaterThan(0);
    expect(first.every((v) => v === 10 || v === 250)).toBe(true);
    expect(m.lam).toBeCloseTo(1 - pasted / (SIZE * SIZE), 10);
    // The middle image is its own partner: unchanged.
    expect(m.pixels.subarray(SIZE * SIZE * 3, 2 * SIZE * SIZE * 3).every((v) => v === 100)).toBe(true);
  });

  it('with both on, batches take one or the other; the same seed draws the same batch', () => {
    const kinds = Array.from({ length: 200 }, (_, i) => mixBatch(batch(), 3, SIZE, { mixup: 0.8, cutmix: 1 }, prng(i), (a) => betaSymmetric(a, prng(i))).kind);
    const share = kinds.filter((k) => k === 'cutmix').length / kinds.length;
    expect(share).toBeGreaterThan(0.4);
    expect(share).toBeLessThan(0.6);
    const again = (seed: number) => mixBatch(batch(), 3, SIZE, { mixup: 0.8, cutmix: 1 }, prng(seed), (a) => betaSymmetric(a, prng(seed + 1)));
    expect(again(9)).toEqual(again(9));
    expect(again(9).pixels).not.toEqual(again(10).pixels);
  });

  it('Beta(alpha, alpha) draws have its mean and variance', () => {
    for (const alpha of [0.4, 0.8, 2]) {
      const rand = prng(Math.round(alpha * 10));
      const xs = Array.from({ length: 20_000 }, () => betaSymmetric(alpha, rand));
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
      expect(mean, `alpha ${alpha}`).toBeCloseTo(0.5, 1);
      expect(variance, `alpha ${alpha}`).toBeCloseTo(1 / (4 * (2 * alpha + 1)), 2);
      expect(xs.every((x) => x >= 0 && x <= 1)).toBe(true);
    }
  });

  it('targets: lam of the own label and 1 - lam of the partner, smoothed; the dominant label is the larger share', () => {
    const { targets, dominant } = mixedTargets(Int32Array.of(0, 2, 1), 0.3, 3, 0);
    [0.3, 0.7, 0, 0, 0, 1, 0.7, 0.3, 0].forEach((v, i) => expect(targets[i], `target ${i}`).toBeCloseTo(v, 6));
    const smoothed = mixedTargets(Int32Array.of(0, 2, 1), 0.3, 3, 0.3).targets;
    [0.1 + 0.7 * 0.3, 0.1 + 0.7 * 0.7, 0.1].forEach((v, i) => expect(smoothed[i], `smoothed ${i}`).toBeCloseTo(v, 6));
    expect(Array.from(dominant)).toEqual([1, 2, 0]);
  });

  it('trains on both engines with the same losses, and refuses what it cannot mix', async () => {
    const { tf, info } = await loadBackend({ choice: 'wasm' });
    const data = tempDir();
    await makeColourDataset(data, 3, 12, 32);
    const common = { store: tempDir(), freeze: 'all' as const, epochs: 2, batchSize: 8, lr: 0.01, calibrate: 'none' as const, mixup: 0.8, cutmix: 1, seed: 4 };
    const onnx = await finetune(tf, info, finetuneOptions(data, tempDir(), { ...common, engine: 'onnx' }));
    const tfjs = await finetune(tf, info, finetuneOptions(data, tempDir(), { ...common, engine: 'tfjs' }));
    expect(onnx.phases[0]!.engine).toBe('onnx');
    onnx.history.forEach((h, i) => expect(h.loss, `epoch ${h.epoch}`).toBeCloseTo(tfjs.history[i]!.loss, 3));
    expect(onnx.cache.enabled).toBe(false);
    const plain = await finetune(tf, info, finetuneOptions(data, tempDir(), { ...common, mixup: 0, cutmix: 0, engine: 'onnx' }));
    // Mixed targets cost more than plain ones on the same weights and images.
    expect(onnx.history[0]!.loss).toBeGreaterThan(plain.history[0]!.loss);
    await expect(finetune(tf, info, finetuneOptions(data, tempDir(), { ...common, classWeight: 'balanced' }))).rejects.toThrow(/a mixed image has two/);
  }, 120_000);
});
