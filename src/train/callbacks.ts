// What happens around the training steps, as Keras's callbacks: stopping on a non-finite loss or weights, the metrics
// table, the best weights with early stopping, and checkpoints. The epoch loop (epoch.ts) only calls them.
import { writeCheckpoint } from './checkpoint.js';
import { writeMetricsCsv } from './run-output.js';
import type { PhaseInfo, Run, RunState } from './types.js';
import type { Trainer } from '../step/index.js';

/** Where an epoch stands when a callback runs. */
export interface EpochContext {
  run: Run;
  phaseIndex: number;
  phase: PhaseInfo;
  epoch: number;
  trainer: Trainer;
}

/** The validation split's loss and accuracy after an epoch (null without a validation split). */
export type Validation = { loss: number; accuracy: number } | null;

export interface Callback {
  /** After each step: why the run stops now, or null. */
  onStep?(ctx: EpochContext, step: { loss: number; finite: boolean }, seen: number): string | null;
  /** After validation: why the run stops now (before the epoch counts), or null. */
  onValidated?(ctx: EpochContext, val: Validation, seen: number): string | null;
  /** After the epoch's row is in the history. */
  onEpochEnd?(ctx: EpochContext, val: Validation): Promise<void>;
  /** Training was interrupted inside the epoch, after `partial` of it. */
  onInterrupt?(ctx: EpochContext, partial: NonNullable<RunState['partial']>): Promise<void>;
}

const keptWeights = (run: Run) => `the ${run.best ? `best epoch's (${run.best.epoch})` : 'initial'} weights were kept`;

/** Stops on a loss or weights that are no longer finite (divergence), the best weights so far kept. */
export const stopOnNonFinite: Callback = {
  onStep({ run, epoch }, step, seen) {
    // Clipped probabilities can hide a divergence from the loss (a clamp turns NaN into a bound), so weights are checked too.
    const diverged = !Number.isFinite(step.loss) ? `the loss became ${step.loss}` : step.finite ? null : 'the weights became NaN or infinite';
    return diverged === null ? null : `${diverged} in epoch ${epoch} after ${seen} images; training stopped and ${keptWeights(run)}`;
  },
  // Weights can grow past what the validation pass can carry while the training loss (clipped) still reads finite.
  onValidated({ run, epoch }, val, seen) {
    return val !== null && !Number.isFinite(val.loss) ? `the validation loss became ${val.loss} in epoch ${epoch} after ${seen} images; training stopped and ${keptWeights(run)}` : null;
  },
};

/** metrics.csv, rewritten after every epoch. */
export const metricsCsv: Callback = {
  async onEpochEnd({ run }) {
    await writeMetricsCsv(run.options.out, run.history);
  },
};

/**
 * The best weights by the monitored value (kept in memory and in checkpoints/best.ckpt), early stopping on the last
 * phase, and a later phase starting from the best weights so far (as a second Keras fit after restore_best_weights).
 */
export const bestWeights: Callback = {
  async onEpochEnd({ run, phaseIndex, phase, epoch }, val) {
    const { tf, options, monitor } = run;
    const value = val === null ? null : monitor === 'val_loss' ? val.loss : val.accuracy;
    const better = (a: number, b: number) => (monitor === 'val_loss' ? a < b : a > b);
    if (value !== null && (run.best === null || better(value, run.best.value))) {
      run.best = { epoch, monitor, value };
      tf.dispose(run.bestWeights);
      run.bestWeights = run.weights.snapshot();
      await writeCheckpoint(run.paths.best, { epoch }, { weights: await run.weights.arrays() });
      run.stale = 0;
    } else if (value !== null && options.patience !== undefined && phaseIndex === run.phases.length - 1 && ++run.stale >= options.patience) {
      // Early stopping watches the last phase only: the head phase is short and always runs whole.
      run.stopReason = `early stopping: ${monitor} did not improve for ${options.patience} epoch${options.patience === 1 ? '' : 's'} after epoch ${run.best!.epoch}`;
    }
    if (epoch >= phase.last && phaseIndex < run.phases.length - 1 && run.best !== null) run.weights.restore(run.bestWeights);
  },
};

/** checkpoints/last.ckpt: every weight, the trainer's optimizer state and where the run stands. */
export async function saveLast(run: Run, phaseIndex: number, trainer: Trainer, epochsDone: number, inEpoch: RunState['partial']): Promise<void> {
  const state: RunState = { version: 1, epochsDone, partial: inEpoch, phase: phaseIndex, history: run.history, best: run.best, stale: run.stale, frozenDigest: run.frozenDigest };
  trainer.syncWeights();
  const optimizer = await trainer.optimizerState();
  await writeCheckpoint(run.paths.last, state, { weights: await run.weights.arrays(), optimizer });
}

/** The last state after every epoch, and inside the epoch when interrupted (a resumed run continues from that batch). */
export const checkpoints: Callback = {
  async onEpochEnd({ run, phaseIndex, epoch, trainer }) {
    await saveLast(run, phaseIndex, trainer, epoch, null);
  },
  async onInterrupt({ run, phaseIndex, epoch, trainer }, partial) {
    await saveLast(run, phaseIndex, trainer, epoch - 1, partial);
  },
};

/** In the order they run. */
export const CALLBACKS: readonly Callback[] = [stopOnNonFinite, metricsCsv, bestWeights, checkpoints];
