// Taking a run up again from its checkpoint: the same images and frozen weights, then its weights, history, best
// epoch and where in the epoch it stopped.
import { existsSync } from 'node:fs';
import { readSplitRecord, runFile } from '../data/index.js';
import { TlError, UsageError } from '../errors.js';
import { notice } from '../util/notice.js';
import { readCheckpoint } from './checkpoint.js';
import type { Run } from './types.js';

/** Sets the run's state from its checkpoint (when resuming) and its best weights; returns where it resumed from. */
export async function restoreRun(run: Run): Promise<{ epoch: number; batches: number } | null> {
  const { tf, options, checkpoint, weights, paths, dataset } = run;
  if (checkpoint) {
    const saved = await readSplitRecord(options.out, 'Start a new run: the record of which image went to which split is lost.');
    if (saved && JSON.stringify(saved.files) !== JSON.stringify(dataset.splitMap)) {
      throw new UsageError(`The images in ${options.data} differ from those the run in ${options.out} started with, so it cannot be resumed exactly.`, { suggestion: 'Restore the dataset, or start a new run.' });
    }
    if (checkpoint.state.frozenDigest !== undefined && checkpoint.state.frozenDigest !== run.frozenDigest) {
      throw new TlError('E_CHECKPOINT', `The frozen layers of ${options.model} differ from those the run in ${options.out} started with (their weights changed), so it cannot be resumed.`, { suggestion: 'Resume with the weights the run started from, or start a new run.' });
    }
    weights.load(checkpoint.groups.weights ?? [], paths.last);
    ({ history: run.history, best: run.best, stale: run.stale, partial: run.partial } = checkpoint.state);
    run.startEpoch = checkpoint.state.epochsDone + 1;
    if (run.startEpoch > run.totalEpochs) {
      // Trained to the end but stopped before its model and report were written: finish it (best weights, calibration,
      // test metrics, model, report). A finished run trains on only with more epochs.
      if (existsSync(runFile(options.out, 'report'))) throw new UsageError(`The run in ${options.out} has already trained all ${run.totalEpochs} epochs.`, { suggestion: `Pass --epochs with a larger number to train on.` });
      notice(`${options.out} trained all ${run.totalEpochs} epochs but stopped before writing its model and report: finishing it`);
    }
  }
  if (run.best !== null && existsSync(paths.best)) {
    const saved = await readCheckpoint<unknown>(paths.best);
    const current = weights.snapshot();
    weights.load(saved.groups.weights ?? [], paths.best);
    run.bestWeights = weights.snapshot();
    weights.restore(current);
    tf.dispose(current);
  } else {
    run.bestWeights = weights.snapshot();
  }
  return checkpoint ? { epoch: run.startEpoch, batches: run.partial?.batches ?? 0 } : null;
}
