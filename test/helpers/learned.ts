// The check every training test makes: the run learned. A mechanics test on a model that cannot learn (vanishing
// activations, pinned statistics) passes while hiding the fault, so each one also shows that its model learned.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

export interface EpochLike {
  loss: number;
  val_accuracy?: number | null;
}

/**
 * The run learned: its last training loss is well below chance (ln of the class count, what a model that predicts
 * the uniform distribution scores) and, where it validated, its best validation accuracy is well above chance.
 */
export function expectLearned(history: readonly EpochLike[], classes: number, what = 'the run'): void {
  const chance = Math.log(classes);
  const last = history.at(-1);
  expect(last, `${what} finished no epoch`).toBeDefined();
  expect(last!.loss, `${what}: last training loss ${last!.loss} is not well below chance (ln ${classes} = ${chance.toFixed(4)})`).toBeLessThan(0.6 * chance);
  const val = history.map((h) => h.val_accuracy).filter((v): v is number => typeof v === 'number');
  if (val.length === 0) return;
  const best = Math.max(...val);
  expect(best, `${what}: best validation accuracy ${best} is not well above chance (${(1 / classes).toFixed(3)})`).toBeGreaterThanOrEqual(Math.min(1, 1 / classes + 0.3));
}

/** The same check on a run folder written by `tl finetune` (its report.json's epochs and classes). */
export function expectRunLearned(run: string): void {
  const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as { history: EpochLike[]; classes: string[] };
  expectLearned(report.history, report.classes.length, run);
}
