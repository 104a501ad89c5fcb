// The headline numbers of a report, shared by the terminal, Markdown and HTML (no heavy imports here).
import type { Metrics } from '../metrics/classification.js';
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


/** Temperature scaling in one sentence: the temperature and what it did to log-loss and ECE. */
export function calibrationLine(c: Calibration): string {
  const effect = (e: CalibrationEffect) => `log-loss ${num(e.logLossBefore)} -> ${num(e.logLossAfter)}, ECE ${num(e.eceBefore)} -> ${num(e.eceAfter)}`;
  if (!c.applied) return `Not calibrated: ${c.reason} (the temperature fitted on the validation split, ${num(c.fitted, 3)}, was not applied).`;
  return `Calibrated with temperature ${num(c.temperature, 3)} (fitted on the validation split, folded into the classifier): validation ${effect(c.val)}${c.test ? `; test ${effect(c.test)}` : ''}.`;
}
