// The headline numbers of a report, shared by the terminal, Markdown and HTML (no heavy imports here).
import type { Metrics } from '../metrics/classification.js';
import type { MultiLabelMetrics } from '../metrics/multilabel.js';
import type { Calibration, CalibrationEffect } from './schema.js';

export const pct = (v: number | null | undefined) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);
export const num = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '–' : v.toFixed(digits));

/** Headline numbers: what a reader wants first. */
export function headline(m: Metrics): [string, string][] {
  return [
    ['images', String(m.count)],
    ['accuracy', pct(m.accuracy)],
    ...(m.top5 !== null ? ([['top-5 accuracy', pct(m.top5)]] as [string, string][]) : []),
    ['macro F1', num(m.macro.f1, 3)],
    ['weighted F1', num(m.weighted.f1, 3)],
    ['log-loss', num(m.logLoss)],
    ['expected calibration error', num(m.ece)],
  ];
}

/** Headline numbers of a classifier with several labels per image. */
export function multiLabelHeadline(m: MultiLabelMetrics): [string, string][] {
  return [
    ['images', String(m.count)],
    ['mAP', num(m.mAP, 3)],
    ['micro F1', num(m.micro.f1, 3)],
    ['macro F1', num(m.macro.f1, 3)],
    ['subset accuracy', pct(m.subsetAccuracy)],
    ['Hamming loss', num(m.hammingLoss)],
    ['log-loss (binary)', num(m.logLoss)],
  ];
}

/** The per-label table's rows: label, threshold, precision, recall, F1, AP, support, then micro and macro. */
export function multiLabelRows(m: MultiLabelMetrics): string[][] {
  return [
    ...m.labels.map((l) => [l.name, num(l.threshold, 3), num(l.precision, 3), num(l.recall, 3), num(l.f1, 3), num(l.ap, 3), String(l.support)]),
    ['micro', '', num(m.micro.precision, 3), num(m.micro.recall, 3), num(m.micro.f1, 3), '', ''],
    ['macro', '', num(m.macro.precision, 3), num(m.macro.recall, 3), num(m.macro.f1, 3), num(m.mAP, 3), ''],
  ];
}

export const MULTI_LABEL_HEAD = ['label', 'threshold', 'precision', 'recall', 'F1', 'AP', 'support'];

/** Temperature scaling in one sentence: the temperature and what it did to log-loss and ECE. */
export function calibrationLine(c: Calibration): string {
  const effect = (e: CalibrationEffect) => `log-loss ${num(e.logLossBefore)} -> ${num(e.logLossAfter)}, ECE ${num(e.eceBefore)} -> ${num(e.eceAfter)}`;
  if (!c.applied) return `Not calibrated: ${c.reason} (the temperature fitted on the validation split, ${num(c.fitted, 3)}, was not applied).`;
  return `Calibrated with temperature ${num(c.temperature, 3)} (fitted on the validation split, folded into the classifier): validation ${effect(c.val)}${c.test ? `; test ${effect(c.test)}` : ''}.`;
}
