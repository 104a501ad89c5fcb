// One epoch: its training steps (from where an interrupted run stopped), validation, then the callbacks.
import type { Cut } from '../model/index.js';
import type { Batch } from '../data/index.js';
import type { FrozenPart } from '../frozen/part.js';
import type { StepInput, Trainer } from '../step/index.js';
import { scheduledLr } from '../step/optim.js';
import { mixBatch, mixedTargets, mixing } from '../data/mix.js';
import { betaSymmetric, mixSeed, prng } from '../util/random.js';
import { CALLBACKS, type EpochContext, type Validation } from './callbacks.js';
import { preciseBnSample, recomputeBatchNorm } from './precise-bn.js';
import { cachedTrainingItems, epochItems } from './views.js';
import type { PhaseInfo, Run } from './types.js';

/** A batch on its way to the trainer, with its soft targets when it was mixed. */
type Pending = Batch & { targets?: Float32Array };

/** The first callback's reason to stop, or null. */
function stopReason(reasons: (string | null | undefined)[]): string | null {
  return reasons.find((r): r is string => typeof r === 'string') ?? null;
}

export async function runEpoch(run: Run, phaseIndex: number, phase: PhaseInfo, epoch: number, trainer: Trainer, frozen: FrozenPart, cut: Cut): Promise<void> {
  const { tf, options, dataset } = run;
  const ctx: EpochContext = { run, phaseIndex, phase, epoch, trainer };
  const resumed = epoch === run.startEpoch ? run.partial : null;
  const started = performance.now() - (resumed?.seconds ?? 0) * 1000;
  let seen = resumed?.seen ?? 0;
  let lossSum = resumed?.lossSum ?? 0;
  let correct = resumed?.correct ?? 0;
  let batchIndex = resumed?.batches ?? 0;
  let lr = phase.lr;
  const total = dataset.splits.train.length;
  const phaseSteps = (phase.last - phase.first + 1) * run.stepsPerEpoch;
  const shown = epochItems(options, dataset.splits.train, epoch);
  const batches = dataset.source.batches(shown.items, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, epoch), augment: shown.augment, augmentSeed: mixSeed(options.seed, epoch, 7), skip: batchIndex, needPixels: frozen.needsPixels });
  // Batches of one size go to the trainer in chunks where it takes them (the onnx engine runs a chunk in one run).
  const chunk = trainer.steps && trainer.chunkFor ? trainer.chunkFor(options.batchSize) : 1;
  // Mixup and CutMix: each batch mixed with itself reversed (seeded by its index in the epoch), its targets soft.
  const mix = mixing(options) ? { size: dataset.source.size, classes: dataset.classes.length } : null;
  const mixed = (batch: Batch, index: number): Pending => {
    const rand = prng(mixSeed(options.seed, epoch, index, 11));
    const m = mixBatch(batch.pixels, batch.items.length, mix!.size, options, rand, (alpha) => betaSymmetric(alpha, rand));
    const { targets, dominant } = mixedTargets(batch.labels, m.lam, mix!.classes, options.labelSmoothing);
    return { ...batch, pixels: m.pixels, labels: dominant, targets };
  };
  let pending: Pending[] = [];
  /** Trains the pending batches; false when the epoch stops (divergence, interruption). */
  const flush = async (): Promise<boolean> => {
    const group = pending;
    pending = [];
    if (group.length === 0) return true;
    const inputs: StepInput[] = [];
    // A chunk's batches (all of one size) are joined end to end into one buffer per tail input.
    const n = group[0]!.items.length;
    const stacked = group.length > 1 && cut.frozen !== null ? { arrays: cut.boundaryShapes.map((shape) => new Float32Array(group.length * n * shape.reduce((a, b) => a * b, 1))), at: 0 } : undefined;
    for (const [i, batch] of group.entries()) {
      const lrOf = scheduledLr(phase.lr, (epoch - phase.first) * run.stepsPerEpoch + batchIndex + i, phaseSteps, run.schedule);
      inputs.push({ boundary: await frozen.boundary(batch, stacked && { ...stacked, at: i * n }), labels: batch.labels, ...(batch.targets ? { targets: batch.targets } : {}), lr: lrOf, dropoutSeed: mixSeed(options.seed, epoch, batchIndex + i, 3) });
    }
    const results = group.length > 1 ? await trainer.steps!(inputs) : [await trainer.step(inputs[0]!)].map((r) => ({ ...r, finite: trainer.weightsFinite() }));
    for (const [i, batch] of group.entries()) {
      const step = results[i]!;
      lr = inputs[i]!.lr;
      const stop = stopReason(CALLBACKS.map((cb) => cb.onStep?.(ctx, step, seen + batch.items.length)));
      if (stop !== null) {
        run.stopReason = stop;
        return false;
      }
      batchIndex++;
      seen += batch.items.length;
      lossSum += step.loss * batch.items.length;
      correct += step.correct;
      const elapsed = (performance.now() - started) / 1000;
      options.onProgress?.({ phase: 'train', stage: phase.name, epoch, epochs: run.totalEpochs, done: seen, total, loss: lossSum / seen, accuracy: correct / seen, imagesPerSecond: seen / elapsed, etaSeconds: (elapsed / seen) * (total - seen) });
    }
    if (options.interrupt?.stop) {
      run.stopReason = `interrupted by ${options.interrupt.stop} in epoch ${epoch} after ${seen} of ${total} images`;
      const partial = { batches: batchIndex, seen, lossSum, correct, seconds: (performance.now() - started) / 1000 };
      for (const cb of CALLBACKS) await cb.onInterrupt?.(ctx, partial);
      return false;
    }
    return true;
  };
  for await (const batch of batches) {
    if (pending.length > 0 && pending[0]!.labels.length !== batch.labels.length && !(await flush())) return;
    pending.push(mix ? mixed(batch, batchIndex + pending.length) : batch);
    if (pending.length >= chunk && !(await flush())) return;
  }
  if (!(await flush())) return;
  // Validation, the best weights and the checkpoint read the tfjs variables.
  trainer.syncWeights();
  const trainSeconds = (performance.now() - started) / 1000;
  if (run.bn === 'train' && (await recomputeBatchNorm(tf, cut, frozen, dataset, preciseBnSample(dataset.splits.train, options.seed), options.batchSize)) > 0) trainer.reloadStates();
  const val: Validation = dataset.splits.val.length > 0 ? await frozen.evaluate(dataset.splits.val, options.batchSize, (done, n) => options.onProgress?.({ phase: 'validate', stage: phase.name, epoch, epochs: run.totalEpochs, done, total: n })) : null;
  await frozen.releaseIfCached([...cachedTrainingItems(options, dataset.splits.train), ...dataset.splits.val]);
  const stop = stopReason(CALLBACKS.map((cb) => cb.onValidated?.(ctx, val, seen)));
  if (stop !== null) {
    run.stopReason = stop;
    return;
  }
  run.history.push({ epoch, loss: lossSum / seen, accuracy: correct / seen, val_loss: val?.loss ?? null, val_accuracy: val?.accuracy ?? null, lr, seconds: (performance.now() - started) / 1000, img_per_s: seen / trainSeconds });
  options.onProgress?.({ phase: 'epoch', stage: phase.name, epoch, epochs: run.totalEpochs, done: total, total, row: run.history.at(-1)! });
  for (const cb of CALLBACKS) await cb.onEpochEnd?.(ctx, val);
  run.tensorsAfterEpoch.push(tf.memory().numTensors);
}
