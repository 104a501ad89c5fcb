import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { computeMetrics } from '../../src/metrics/classification.js';

describe('computeMetrics, by hand', () => {
  // 3 classes; class 'c' is never predicted.
  const classes = ['a', 'b', 'c'];
  const probs = [
    0.8, 0.1, 0.1, // a -> a
    0.6, 0.3, 0.1, // a -> a
    0.3, 0.6, 0.1, // b -> b
    0.55, 0.4, 0.05, // b -> a
    0.2, 0.7, 0.1, // c -> b
  ];
  const labels = [0, 0, 1, 1, 2];
  const m = computeMetrics(probs, labels, classes, { paths: ['p0', 'p1', 'p2', 'p3', 'p4'], bins: 10 });

  it('accuracy, confusion, per-class precision / recall / F1 / support', () => {
    expect(m.accuracy).toBeCloseTo(3 / 5, 12);
    expect(m.confusion).toEqual([[2, 0, 0], [1, 1, 0], [0, 1, 0]]);
    expect(m.perClass.map((c) => [c.precision, c.recall, c.support, c.predicted])).toEqual([[2 / 3, 1, 2, 3], [0.5, 0.5, 2, 2], [0, 0, 1, 0]]);
    expect(m.perClass[0]!.f1).toBeCloseTo(0.8, 12);
    expect(m.perClass[1]!.f1).toBeCloseTo(0.5, 12);
    // A class with no predictions: precision and F1 are 0, not NaN.
    expect(m.perClass[2]!.f1).toBe(0);
    expect(m.macro.precision).toBeCloseTo((2 / 3 + 0.5) / 3, 12);
    expect(m.weighted.recall).toBeCloseTo((1 * 2 + 0.5 * 2 + 0) / 5, 12);
    expect(m.top5).toBeNull();
  });

  it('log-loss, calibration error and the most confident mistakes', () => {
    expect(m.logLoss).toBeCloseTo(-(Math.log(0.8) + Math.log(0.6) + Math.log(0.6) + Math.log(0.4) + Math.log(0.1)) / 5, 6);
    // Confidences 0.8, 0.6, 0.6, 0.55, 0.7 in bins (0.7,0.8], (0.5,0.6] x3, (0.6,0.7].
    const used = m.reliability.filter((b) => b.count > 0).map((b) => [b.upper, b.count, b.confidence, b.accuracy]);
    expect(used.map((u) => u.map((v) => Number((v as number).toFixed(6))))).toEqual([[0.6, 3, 0.583333, 0.666667], [0.7, 1, 0.7, 0], [0.8, 1, 0.8, 1]]);
    expect(m.ece).toBeCloseTo((3 / 5) * Math.abs(2 / 3 - 1.75 / 3) + (1 / 5) * 0.7 + (1 / 5) * 0.2, 12);
    expect(m.mistakes).toEqual([
      { path: 'p4', true: 'c', predicted: 'b', probability: 0.7 },
      { path: 'p3', true: 'b', predicted: 'a', probability: 0.55 },
    ]);
  });

  it('a single-class split', () => {
    const one = computeMetrics([0.9, 0.1, 0.3, 0.7], [0, 0], ['a', 'b']);
    expect(one.accuracy).toBe(0.5);
    expect(one.perClass.map((c) => [c.precision, c.recall, c.f1, c.support])).toEqual([[1, 0.5, 2 / 3, 2], [0, 0, 0, 0]]);
    // Class b is predicted once, so it counts in the macro average (scikit-learn averages over labels present in
    // either the truth or the predictions).
    expect(one.macro.f1).toBeCloseTo(1 / 3, 12);
    expect(one.weighted.f1).toBeCloseTo(2 / 3, 12);
    const perfect = computeMetrics([0.9, 0.1, 0.8, 0.2], [0, 0], ['a', 'b']);
    expect(perfect.macro).toEqual({ precision: 1, recall: 1, f1: 1 });
    expect(perfect.mistakes).toEqual([]);
  });

  it('NaN probabilities are a clear error counting the images, not a crash', () => {
    const probs = [0.9, 0.1, NaN, NaN, 0.2, 0.8];
    expect(() => computeMetrics(probs, [0, 1, 1], ['a', 'b'])).toThrow(/not finite \(NaN or infinite\) for 1 of 3 images/);
  });

  it('rejects a probability matrix of the wrong size', () => {
    expect(() => computeMetrics([0.5, 0.5, 1], [0, 1], ['a', 'b'])).toThrow(/3 probabilities for 2 images x 2 classes/);
  });
});

describe('computeMetrics against scikit-learn', () => {
  // Written by scripts/sklearn_metrics.py (scikit-learn 1.2.1); 7 classes, one never predicted, one never true.
  const expected = JSON.parse(readFileSync(new URL('./sklearn-expected.json', import.meta.url), 'utf8')) as {
    classes: number; labels: number[]; probs: number[][]; accuracy: number; top5: number; logLoss: number;
    precision: number[]; recall: number[]; f1: number[]; support: number[];
    macro: Record<'precision' | 'recall' | 'f1', number>; weighted: Record<'precision' | 'recall' | 'f1', number>; confusion: number[][];
  };
  const names = Array.from({ length: expected.classes }, (_, i) => `c${i}`);
  const m = computeMetrics(expected.probs.flat(), expected.labels, names);

  it('matches accuracy, top-5, log-loss and the confusion matrix', () => {
    expect(m.accuracy).toBeCloseTo(expected.accuracy, 12);
    expect(m.top5).toBeCloseTo(expected.top5, 12);
    expect(m.logLoss).toBeCloseTo(expected.logLoss, 9);
    expect(m.confusion).toEqual(expected.confusion);
  });

  it('matches per-class, macro and weighted precision / recall / F1', () => {
    m.perClass.forEach((c, i) => {
      expect(c.precision).toBeCloseTo(expected.precision[i]!, 12);
      expect(c.recall).toBeCloseTo(expected.recall[i]!, 12);
      expect(c.f1).toBeCloseTo(expected.f1[i]!, 12);
      expect(c.support).toBe(expected.support[i]);
    });
    for (const key of ['precision', 'recall', 'f1'] as const) {
      expect(m.macro[key]).toBeCloseTo(expected.macro[key], 12);
      expect(m.weighted[key]).toBeCloseTo(expected.weighted[key], 12);
    }
  });
});
