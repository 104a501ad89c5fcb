// Multi-label metrics against scikit-learn 1.7.2's on seeded data (scripts/sklearn_multilabel.py wrote
// sklearn-multilabel-expected.json), and the thresholds tuned for F1 against an exhaustive search.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { averagePrecision, computeMultiLabelMetrics, tuneThresholds } from '../../src/metrics/multilabel.js';

const ref = JSON.parse(readFileSync(new URL('./sklearn-multilabel-expected.json', import.meta.url), 'utf8')) as {
  truth: number[]; probs: number[]; thresholds: number[]; ap: number[]; microF1: number; macroF1: number; macroP: number; macroR: number; perLabelF1: number[]; hamming: number; subset: number; logLoss: number;
};

describe('multi-label metrics', () => {
  it("equal scikit-learn's on the same predictions (ties in the scores included)", () => {
    const m = computeMultiLabelMetrics(Float32Array.from(ref.probs), ref.truth, ['a', 'b', 'c', 'd'], ref.thresholds);
    m.labels.forEach((l, c) => {
      expect(l.ap, `AP of ${l.name}`).toBeCloseTo(ref.ap[c]!, 6);
      expect(l.f1, `F1 of ${l.name}`).toBeCloseTo(ref.perLabelF1[c]!, 6);
    });
    expect(m.micro.f1).toBeCloseTo(ref.microF1, 6);
    expect(m.macro.f1).toBeCloseTo(ref.macroF1, 6);
    expect(m.macro.precision).toBeCloseTo(ref.macroP, 6);
    expect(m.macro.recall).toBeCloseTo(ref.macroR, 6);
    expect(m.hammingLoss).toBeCloseTo(ref.hamming, 6);
    expect(m.subsetAccuracy).toBeCloseTo(ref.subset, 6);
    expect(m.logLoss).toBeCloseTo(ref.logLoss, 5);
    expect(m.mAP).toBeCloseTo(ref.ap.reduce((a, b) => a + b, 0) / 4, 6);
  });

  it('AP is null for a label no image has', () => {
    expect(averagePrecision([0.9, 0.1], [0, 0])).toBeNull();
    expect(averagePrecision([0.9, 0.1, 0.5], [1, 0, 0])).toBe(1);
  });

  it('tuned thresholds reach the best F1 any threshold reaches, label by label', () => {
    const k = 4;
    const thresholds = tuneThresholds(ref.probs, ref.truth, k);
    const f1At = (c: number, t: number) => computeMultiLabelMetrics(ref.probs, ref.truth, ['a', 'b', 'c', 'd'], [0, 1, 2, 3].map((j) => (j === c ? t : 2))).labels[c]!.f1;
    for (let c = 0; c < k; c++) {
      const candidates = [...new Set(ref.probs.filter((_, i) => i % k === c)), 0, 1.01];
      const best = Math.max(...candidates.map((t) => f1At(c, t)));
      expect(f1At(c, thresholds[c]!), `label ${c}`).toBeCloseTo(best, 9);
      expect(thresholds[c]).not.toBe(0.5);
    }
    // A label without positives keeps 0.5.
    expect(tuneThresholds([0.2, 0.9], [0, 0], 1)).toEqual([0.5]);
  });
});
