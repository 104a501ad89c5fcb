// One phase of a run: cut the model at its freeze setting, open what computes the boundary and the steps, train its
// epochs, and at the end keep the best weights, calibrate and evaluate the test split.
import { mixing } from '../data/mix.js';
import { cachedTrainingItems, usesViews } from './views.js';
import { applyTrainability, cutModel, type Cut } from '../model/index.js';
import { onnxSessionFor } from '../engine/index.js';
import { InterruptedError, UsageError } from '../errors.js';
import { OutputCache } from '../frozen/cache.js';
import { FrozenPart } from '../frozen/part.js';
import { OnnxTail } from '../onnx/tail.js';
import { TrainStepCompileError, type TrainStepGraph } from '../onnx/train-step.js';
import { ReplicaPool } from '../replicas/pool.js';
import type { Trainer } from '../step/index.js';
import { nchwcTarget, OnnxTrainer, type TailTrainerConfig } from '../step/onnx.js';
import { TfjsTrainer } from '../step/tfjs.js';
import { notice } from '../util/notice.js';
import { calibrate, tuneRunThresholds } from './calibrate.js';
import { runEpoch } from './epoch.js';
import { findLearningRate } from './lr-find.js';
import type { PhaseInfo, Run } from './types.js';

/** The phase's train step compiled for ONNX Runtime when the run uses it; null (saying why) when the tail does not compile. */
async function compileOnnxStep(run: Run, phase: PhaseInfo, cut: Cut): Promise<TrainStepGraph | null> {
  if (run.options.engine !== 'onnx') return null;
  try {
    return await OnnxTrainer.compile(cut.tail, trainerConfig(run, cut));
  } catch (err) {
    if (!(err instanceof TrainStepCompileError)) throw err;
    notice(`the ${phase.name} phase trains on TensorFlow.js: ${err.message}`);
    return null;
  }
}

function trainerConfig(run: Run, cut: Cut): TailTrainerConfig {
  return { optimizer: run.optimizer, loss: run.loss, weightDecay: run.options.weightDecay, boundaryShapes: cut.boundaryShapes, batchSize: run.options.batchSize, lrScales: run.lrScales };
}

/**
 * The frozen part's outputs for every training and validation image, computed before the phase trains (as a PyTorch
 * loop that caches its frozen prefix does); its session is then closed, so that it and the trainer's never hold
 * their memory at the same time.
 */
async function fillCache(run: Run, frozen: FrozenPart, phase: PhaseInfo): Promise<void> {
  const { options, dataset } = run;
  const items = [...cachedTrainingItems(options, dataset.splits.train), ...dataset.splits.val];
  const started = performance.now();
  const images = await frozen.fill(items, options.batchSize, {
    onProgress: (done, total) => options.onProgress?.({ phase: 'frozen', stage: phase.name, epoch: Math.max(phase.first, run.startEpoch), epochs: run.totalEpochs, done, total }),
    shouldStop: () => Boolean(options.interrupt?.stop),
  });
  if (options.interrupt?.stop) {
    const signal = options.interrupt.stop === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
    throw new InterruptedError(signal, `Interrupted by ${signal} while computing the frozen part's outputs, before the ${phase.name} phase trained; \`tl finetune --resume ${options.out}\` takes the run up again.`);
  }
  if (images > 0) run.frozenPass = { images: (run.frozenPass?.images ?? 0) + images, seconds: (run.frozenPass?.seconds ?? 0) + (performance.now() - started) / 1000 };
  await frozen.releaseIfCached(items);
}

/** The tail's forward pass on ONNX Runtime for evaluation when the run uses it and the tail compiles; null otherwise. */
async function openOnnxTail(run: Run, cut: Cut): Promise<OnnxTail | null> {
  if (run.options.engine !== 'onnx') return null;
  try {
    return await OnnxTail.open(cut.tail, { boundaryShapes: cut.boundaryShapes, nchwc: await nchwcTarget(run.options.batchSize) });
  } catch (err) {
    // The trainer has said why the phase trains on TensorFlow.js: the tail is evaluated there too.
    if (err instanceof TrainStepCompileError) return null;
    throw err;
  }
}

/** The cut at the phase's freeze setting, and the cache of its frozen part's outputs (filled from `--cache` when given). */
function cutFor(run: Run, phase: PhaseInfo): { cut: Cut; cache: OutputCache | null } {
  const { tf, options, dataset, full, backbone } = run;
  const frozenNames = new Set(backbone.layers.slice(0, phase.frozenLayers).map((l) => l.name));
  applyTrainability(full, frozenNames, run.bn);
  const cut = cutModel(tf, full, frozenNames);
  if (cut.tail !== full) run.tails.push(cut.tail);
  run.boundaryLayers = cut.frozen ? cut.boundaryLayers : [];
  // Augmentation and mixing change the images every epoch: the frozen part then runs on every batch (but for
  // --augment-views, whose views are cached like images).
  const useCache = cut.frozen !== null && (options.augment === 'none' || usesViews(options)) && !mixing(options);
  run.cacheStats.enabled ||= useCache;
  const cache = useCache ? new OutputCache(cut.boundaryShapes, options.cacheMb * 2 ** 20, options.out) : null;
  if (run.cached && cache) {
    // The cut must be the one the cache was computed at; then every image's boundary comes from it.
    if (JSON.stringify(cut.boundaryLayers) !== JSON.stringify(run.cached.layers)) throw new UsageError(`--cache ${options.cache}: the cache holds the outputs of ${run.cached.layers.join(', ')}; this run's cut is at ${cut.boundaryLayers.join(', ')}.`);
    for (const item of [...dataset.splits.train, ...dataset.splits.val, ...dataset.splits.test]) cache.set(item.path, run.cached.arrays.get(item.rel)!);
  }
  return { cut, cache };
}

/** Like Keras's restore_best_weights, then calibration and the test split, through this phase's cut. */
async function finishPhase(run: Run, frozen: FrozenPart): Promise<void> {
  const { options, dataset } = run;
  // The saved model is the best epoch's (the current weights when nothing was validated or training was interrupted
  // before validation; the initial ones after a divergence in epoch 1). The test split goes through the frozen part on
  // the replicas or ONNX Runtime.
  const interrupted = run.stopReason?.startsWith('interrupted') === true;
  if (run.best !== null || (run.stopReason !== null && !interrupted)) run.weights.restore(run.bestWeights);
  if (dataset.labelSets) {
    // Several labels per image: no temperature (each sigmoid stands alone); each label's threshold is tuned instead.
    if (!interrupted) run.thresholds = await tuneRunThresholds(run, frozen);
  } else if (options.calibrate === 'temperature' && !interrupted && dataset.splits.val.length > 0) run.calibration = await calibrate(run, frozen);
  // An interrupted run stops promptly: its test split is evaluated when it is resumed and finishes.
  if (dataset.splits.test.length > 0 && !interrupted) run.test = await frozen.evaluate(dataset.splits.test, options.batchSize, undefined, run.kept);
}

/** One phase: cut the model at its freeze setting, open what computes the boundary and the steps, train its epochs. */
export async function runPhase(run: Run, phaseIndex: number, phase: PhaseInfo, mode: 'train' | 'lr-find'): Promise<void> {
  const { tf, options, dataset } = run;
  const { cut, cache } = cutFor(run, phase);
  // Everything that keeps the process alive (worker threads, ONNX sessions) is closed in the finally below, whichever
  // of them failed to start. Replicas compute tfjs gradients and run a tfjs frozen part: ONNX Runtime needs neither.
  let pool: ReplicaPool | null = null;
  let frozen: FrozenPart | null = null;
  let trainer: Trainer | null = null;
  let tail: OnnxTail | null = null;
  try {
    const compiled = await compileOnnxStep(run, phase, cut);
    pool = compiled === null && options.workers > 1 ? await ReplicaPool.start(cut.tail, { count: options.workers - 1, backend: run.backend.name, bn: run.bn }) : null;
    const frozenCut = cut.frozen;
    const openSession = frozenCut && options.engine === 'onnx' && !run.cached ? () => onnxSessionFor(frozenCut, { ...(options.store ? { store: options.store } : {}), spinning: false }) : null;
    frozen = new FrozenPart(tf, cut, run.source.preprocess, dataset, cache, pool, openSession);
    if (cache !== null && phase.last >= run.startEpoch) await fillCache(run, frozen, phase);
    const openTrainer = async (): Promise<Trainer> => (compiled ? await OnnxTrainer.open(tf, cut.tail, trainerConfig(run, cut), compiled) : new TfjsTrainer(tf, cut.tail, { optimizer: run.optimizer, lr: phase.lr, loss: run.loss, weightDecay: options.weightDecay, accumulate: options.accumulate, classes: dataset.classes.length, boundaryShapes: cut.boundaryShapes, pool, lrScales: run.lrScales }));
    trainer = await openTrainer();
    phase.engine = trainer.engine;
    tail = compiled ? await openOnnxTail(run, cut) : null;
    frozen.tail = tail;
    if (phaseIndex === 0 && run.lrFind !== null) {
      // The range test trains this phase's trainer on this phase's batches; the weights go back to where they were
      // and a fresh trainer (no optimizer state) takes over.
      const { spec, found } = run.lrFind;
      run.lrFind = null;
      const result = await findLearningRate(run, spec, trainer, frozen);
      await trainer.close();
      trainer = null;
      trainer = await openTrainer();
      await found(result);
      if (mode === 'lr-find') return;
    }
    const saved = run.checkpoint?.state.phase === phaseIndex ? (run.checkpoint.groups.optimizer ?? null) : null;
    await trainer.loadOptimizerState(saved);
    run.stale = run.startEpoch > phase.first ? run.stale : 0;
    for (let epoch = Math.max(phase.first, run.startEpoch); epoch <= phase.last && run.stopReason === null; epoch++) {
      await runEpoch(run, phaseIndex, phase, epoch, trainer, frozen, cut);
    }
    // The weights are in the tfjs variables (each epoch syncs them): the trainer's memory goes before the test split
    // may need the frozen part's session again.
    await trainer.close();
    trainer = null;
    if (run.stopReason !== null || phaseIndex === run.phases.length - 1) await finishPhase(run, frozen);
  } finally {
    run.cacheStats.hits += cache?.hits ?? 0;
    run.cacheStats.misses += cache?.misses ?? 0;
    run.cacheStats.spilled = Math.max(run.cacheStats.spilled, cache?.spilled ?? 0);
    await pool?.close();
    await frozen?.close();
    await trainer?.close();
    await tail?.close();
    cache?.dispose();
  }
}
