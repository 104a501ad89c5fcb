// Fine-tuning, as its sequence: read the inputs, plan, restore a checkpoint, train the phases, finish. The frozen part
// runs once per image in inference mode (cached) and the tail trains on its outputs (phase.ts, epoch.ts); what
// happens around the steps is in callbacks.ts.
import { existsSync, rmSync, statSync } from 'node:fs';
import type { BackendInfo, LayersModel, Tf } from '../backend/index.js';
import { resolveFreeze } from '../model/index.js';
import { blockRateScales } from '../model/rates.js';
import { runFile } from '../data/index.js';
import { InterruptedError, UsageError } from '../errors.js';
import { notice } from '../util/notice.js';
import { setBatchNormMomentum } from './precise-bn.js';
import { freezeAutoFor } from './freeze-auto.js';
import { finishRun } from './finish.js';
import { classifier } from './head.js';
import { checkedCache, disposeSource, readRunInputs } from './inputs.js';
import { lrFindStep } from './lr-find.js';
import { runPhase } from './phase.js';
import { freezeSetting, planRun } from './plan.js';
import { restoreRun } from './resume.js';
import { openRunFolder } from './run-folder.js';
import { writeRunRecords } from './run-output.js';
import { checkpointPaths, resolveOptions, type FinetuneOptions, type FinetuneResult, type LrFindRun, type Run, type RunOptions } from './types.js';
import { LayerOrderWeights } from './weights.js';

export { checkpointPaths, type EpochRow, type FinetuneOptions, type FinetuneResult, type PhaseInfo, type ProgressEvent, type RunControl } from './types.js';

/**
 * `--lr-decay-per-block`: each weight's multiple of the rate (null when it is 1), said once with the blocks it spans.
 */
function rateScales(options: RunOptions, full: LayersModel, backbone: LayersModel, frozenCount: number): Record<string, number> | null {
  if (options.lrDecayPerBlock === 1) return null;
  const { scales, blocks } = blockRateScales(full, backbone, options.lrDecayPerBlock);
  const trained = [...new Set(full.layers.slice(frozenCount).flatMap((l) => l.trainableWeights.map((w) => scales[w.originalName] ?? 1)))].sort((a, b) => b - a);
  if (!options.resume) notice(`--lr-decay-per-block ${options.lrDecayPerBlock}: the head trains at the rate, the ${blocks} blocks of the backbone at rate x ${options.lrDecayPerBlock}^1 (the last) to ^${blocks} (the first); the layers that train here take ${trained.length} rates, from x${trained[0]!.toPrecision(3)} to x${trained.at(-1)!.toPrecision(3)}`);
  return scales;
}

/** Fine-tunes a registry model on a folder dataset and writes the run folder (locked while the run lasts). */
export async function finetune(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<FinetuneResult> {
  return (await inRunFolder(tf, backend, resolveOptions(options, backend), 'train')) as FinetuneResult;
}

/**
 * The learning-rate range test alone (`tl lr-find`): the run's first phase set up as `finetune` would (cut, frozen-part
 * cache, trainer), the test run on it, its curve written to the run folder (lr-find.json, lr-find.svg); nothing trains.
 */
export async function lrFind(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<LrFindRun> {
  return (await inRunFolder(tf, backend, resolveOptions({ ...options, lr: 'find' }, backend), 'lr-find')) as LrFindRun;
}

async function inRunFolder(tf: Tf, backend: BackendInfo, options: RunOptions, mode: 'train' | 'lr-find'): Promise<FinetuneResult | LrFindRun> {
  if (options.batchSize % options.accumulate !== 0) {
    throw new UsageError(`--batch-size ${options.batchSize} must be a multiple of --accumulate ${options.accumulate}.`);
  }
  // Before any slow work: a run folder that cannot be written fails now, not after decoding every image.
  const folder = await openRunFolder(options.out, { data: options.data, unique: options.uniqueOut ?? false, resume: options.resume ?? false });
  let wrote = false;
  try {
    const result = await train(tf, backend, { ...options, out: folder.dir }, () => void (wrote = true), mode);
    wrote = true;
    return result;
  } catch (err) {
    // A new run that failed before its first checkpoint leaves no folder that looks like a run (an interrupted one has a
    // checkpoint, and a resumed one keeps what it had).
    if (wrote && !options.resume && !(err instanceof InterruptedError) && !existsSync(checkpointPaths(folder.dir).last)) {
      for (const name of ['config', 'split', 'metrics'] as const) rmSync(runFile(folder.dir, name), { force: true });
      const checkpoints = runFile(folder.dir, 'checkpoints');
      if (existsSync(checkpoints) && statSync(checkpoints).isDirectory()) rmSync(checkpoints, { recursive: true, force: true });
      wrote = false;
    }
    throw err;
  } finally {
    folder.release({ discard: !wrote });
  }
}

async function train(tf: Tf, backend: BackendInfo, options: RunOptions, writing: () => void, mode: 'train' | 'lr-find'): Promise<FinetuneResult | LrFindRun> {
  const started = performance.now();
  const { checkpoint, source, dataset, cacheRecord, warnings, splitRecord } = await readRunInputs(tf, options);
  const backbone = source.model;
  const inputSize = options.inputSize ?? source.inputSize;
  let full;
  let plan;
  let frozenCount;
  try {
    // `auto`: chosen from the data (freeze-auto.ts). A resumed run reads the chosen count from its config.
    if (options.freeze === 'auto' && dataset.labelSets) throw new UsageError('--freeze auto scores the backbone with one label per image; with --multi-label, give --freeze (or leave it at the default).');
    const freezeAuto = options.freeze === 'auto' ? await freezeAutoFor(tf, backend, options, source, dataset, (o) => finetune(tf, backend, o)) : null;
    const freeze = freezeSetting(options, source.fineTuneFrom, freezeAuto);
    if (options.freeze === 'default' && !options.resume) notice(source.fineTuneFrom ? `--freeze ${source.fineTuneFrom.layers} (${source.name}'s default: ${source.fineTuneFrom.why}); --freeze all trains the head alone` : `--freeze all (the head alone): ${source.name} has no default fine-tuning point`);
    frozenCount = resolveFreeze(backbone, freeze, options.model);
    plan = planRun(options, { freeze, frozenCount, layerCount: backbone.layers.length, trainLabels: dataset.splits.train.map((i) => i.label), classes: dataset.classes.length, labelSets: dataset.labelSets, inputSize, backend: backend.label, freezeAuto });
    full = classifier(tf, source, dataset.classes, options);
  } catch (err) {
    disposeSource(source);
    throw err;
  }
  for (const text of plan.notices) notice(text);
  warnings.push(...plan.warnings);
  if (options.bnMomentum !== undefined) setBatchNormMomentum(full, options.bnMomentum);
  const weights = new LayerOrderWeights(tf, full, Math.min(...plan.phases.map((p) => p.frozenLayers)));
  const frozenDigest = weights.frozenDigest();
  const cached = cacheRecord ? await checkedCache(options, cacheRecord, { model: source.name, frozenDigest, freeze: frozenCount, inputSize, preprocess: source.preprocess, headEpochs: options.headEpochs }, dataset).catch((err: unknown) => {
    full.dispose();
    throw err;
  }) : null;
  const run: Run = {
    tf, backend, options, source, dataset, full, backbone, phases: plan.phases, bn: plan.bn, optimizer: plan.optimizer, loss: plan.loss, schedule: plan.schedule, stepsPerEpoch: plan.stepsPerEpoch, totalEpochs: plan.totalEpochs,
    monitor: options.monitor, paths: checkpointPaths(options.out), weights, frozenDigest, checkpoint, startEpoch: 1,
    history: [], best: null, bestWeights: [], stale: 0, partial: null, stopReason: null, tensorsAfterEpoch: [],
    cacheStats: { enabled: false, hits: 0, misses: 0, spilled: 0 }, boundaryLayers: [], tails: [], kept: { probs: [], labels: [], paths: [] }, test: null, calibration: null, thresholds: null,
    lrScales: rateScales(options, full, backbone, frozenCount),
    lrFind: null, lrFindResult: null, cached, frozenPass: null,
  };
  if (options.lr === 'find') run.lrFind = lrFindStep(run, plan.config, splitRecord, mode);
  try {
    const resumedFrom = await restoreRun(run);
    writing();
    await writeRunRecords(options.out, plan.config, splitRecord);
    for (const [phaseIndex, phase] of run.phases.entries()) {
      if (run.stopReason !== null) break;
      // The last phase always runs: with no epoch left it only finishes (best weights, calibration, test split).
      if (phase.last < run.startEpoch && phaseIndex < run.phases.length - 1) continue;
      await runPhase(run, phaseIndex, phase, mode);
      run.partial = null;
      if (mode === 'lr-find') return run.lrFindResult!;
    }
    return await finishRun(run, plan, { frozenCount, inputSize, warnings, resumedFrom, started });
  } finally {
    tf.dispose(run.bestWeights);
    // tfjs counts a layer's references per application: tail layers were applied twice (full and tail), frozen
    // layers once, so each tail is disposed and the frozen containers (which own nothing of their own) are not.
    for (const tail of run.tails) tail.dispose();
    full.dispose();
  }
}
