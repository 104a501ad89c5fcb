// Fine-tuning: the frozen part runs once per image in inference mode (cached), the tail trains on its outputs.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { wasmHeapBytes, type BackendInfo, type LayersModel, type LayerVariable, type Tensor, type Tf } from '../backend/index.js';
import { classesMissingFrom, openDataset, preprocess, preprocessPixels, type AugmentLevel, type Batch, type Dataset, type ImageItem, type ResizeMode } from '../data/index.js';
import { InterruptedError, TlError, UsageError } from '../errors.js';
import type { PreprocessMode } from '../registry/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { mixSeed } from '../util/random.js';
import { notice } from '../util/notice.js';
import { initializeWeights } from '../registry/init.js';
import { loadBackbone } from '../weights/backbone.js';
import type { DownloadProgress } from '../weights/download.js';
import { saveLayersModel } from '../weights/save.js';
import { onnxSessionFor } from '../engine/index.js';
import { computeMetrics, type Metrics } from '../eval/metrics.js';
import { exportOnnx, OnnxExportError } from '../onnx/export.js';
import type { OnnxSession } from '../onnx/runtime.js';
import { REPORT_SCHEMA_VERSION, writeReports } from '../report/index.js';
import { TL_VERSION } from '../version.js';
import { FeatureCache } from './features.js';
import { openRunFolder } from './run-folder.js';
import { OnnxTail } from './onnx-tail.js';
import { TrainStepCompileError } from '../onnx/train-step.js';
import { ReplicaPool, type Shard, type ShardResult } from './parallel.js';
import { readCheckpoint, toArrays, toTensors, writeCheckpoint, type NamedArray } from './checkpoint.js';
import { applyWeightDecay, balancedClassWeights, createOptimizer, disposeOptimizer, scheduledLr, setLearningRate, type Optimizer, type OptimizerConfig, type OptimizerName, type ScheduleConfig, type ScheduleName } from './optim.js';
import { crossEntropy, seedDropout, shardGradients, type LossConfig } from './step.js';
import { applyTrainability, attachHead, cutModel, resolveFreeze, type BnMode, type Cut, type FreezeSpec } from './freeze.js';

export interface FinetuneOptions {
  data: string;
  model: string;
  out: string;
  freeze: FreezeSpec;
  epochs: number;
  /** Epochs that first train the head alone (the whole backbone frozen) before `epochs` at the `freeze` setting. */
  headEpochs?: number;
  batchSize: number;
  /** Learning rate; `auto` is 1e-3 when only the head trains and 1e-4 when backbone layers train too. */
  lr: number | 'auto';
  /** Learning rate of the second phase of a two-phase run (default lr / 10). */
  finetuneLr?: number;
  optimizer?: OptimizerName;
  /** SGD and RMSprop momentum (default 0.9 for SGD, 0 for RMSprop). */
  momentum?: number;
  nesterov?: boolean;
  schedule?: ScheduleName;
  /** Epochs of linear warmup at the start of each phase. */
  warmupEpochs?: number;
  /** Step schedule: multiply the rate by `gamma` every `stepEpochs` epochs. */
  stepEpochs?: number;
  gamma?: number;
  /** Decoupled weight decay (Keras 3's `weight_decay`). */
  weightDecay?: number;
  labelSmoothing?: number;
  /** `balanced` weighs each image's loss by n / (classes x images of its class) over the training split. */
  classWeight?: 'none' | 'balanced';
  /** Continue the run in `out` from its last checkpoint. */
  resume?: boolean;
  /** `out` is a default name: if it exists, use `out-2`, `out-3`, ... instead (the result says which). */
  uniqueOut?: boolean;
  /** Engine for the frozen part: `onnx` runs it on ONNX Runtime (exported once, cached in the store). */
  engine?: 'onnx' | 'tfjs';
  /** Micro-batches per optimizer step; the effective batch stays `batchSize`. */
  accumulate: number;
  bn: BnMode;
  headHidden?: number;
  dropout: number;
  augment: AugmentLevel;
  inputSize?: number;
  /** Overrides the backbone's preprocessing (needed for tfjs models tl did not write). */
  preprocess?: PreprocessMode;
  val: number;
  test: number;
  seed: number;
  resize: ResizeMode;
  maxPixels: number;
  weights: 'pretrained' | 'random';
  /** Bytes of frozen-part outputs kept in memory; beyond it they go to a file in the run folder. */
  featureCacheBytes: number;
  /** Threads that compute gradients (this one plus worker replicas of the tail); 1 trains on this thread only. */
  workers: number;
  /** Validation metric that picks the best epoch (whose weights the saved model gets) and drives early stopping. */
  monitor?: 'val_loss' | 'val_accuracy';
  /** Stop after this many epochs of the last phase without improvement of `monitor`; undefined trains every epoch. */
  patience?: number;
  store?: string;
  onProgress?: (event: ProgressEvent) => void;
  onDownload?: (p: DownloadProgress) => void;
  /** Set `stop` (e.g. on SIGINT) to end training after the current batch; the run folder is still written. */
  interrupt?: { stop: string | null };
}

export interface ProgressEvent {
  phase: 'decode' | 'train' | 'validate' | 'epoch';
  /** The finished epoch's metrics (phase `epoch`). */
  row?: EpochRow;
  epoch: number;
  epochs: number;
  done: number;
  total: number;
  loss?: number;
  accuracy?: number;
  imagesPerSecond?: number;
  etaSeconds?: number;
}

export interface EpochRow {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss: number | null;
  val_accuracy: number | null;
  lr: number;
  seconds: number;
  img_per_s: number;
}

/** One stretch of training with one freeze setting, learning rate and optimizer. */
export interface PhaseInfo {
  name: 'head' | 'finetune' | 'train';
  /** First and last epoch (1-based, counted over the whole run). */
  first: number;
  last: number;
  frozenLayers: number;
  lr: number;
  /** What trained it: ONNX Runtime (a compiled train step) or TensorFlow.js; set when the phase starts. */
  engine?: 'onnx' | 'tfjs';
}

export interface FinetuneResult {
  outDir: string;
  classes: string[];
  history: EpochRow[];
  phases: PhaseInfo[];
  test: { loss: number; accuracy: number; count: number } | null;
  /** Full metrics on the test split. */
  metrics: Metrics | null;
  /** The model.onnx written beside the tfjs model, or why it was not. */
  onnx: string;
  frozenLayers: number;
  totalLayers: number;
  trainableParams: number;
  boundaryLayers: string[];
  cache: { enabled: boolean; hitRate: number; spilled: number };
  /** The epoch whose weights were saved (the best by `monitor`), and its value. */
  best: { epoch: number; monitor: string; value: number } | null;
  /** Why training ended before the last epoch, if it did. */
  stopReason: string | null;
  /** The epoch a resumed run started from (its checkpoint's epochs and batches), or null. */
  resumedFrom: { epoch: number; batches: number } | null;
  /** Peak wasm heap in bytes (wasm backend only; its limit is 4 GiB). */
  wasmHeapBytes: number | null;
  /** tf.memory().numTensors after each epoch (flat when nothing leaks). */
  tensorsAfterEpoch: number[];
  skipped: { path: string; reason: string }[];
  /** What the user should know about the data: classes missing from a split, heavy imbalance. */
  warnings: string[];
}

/** What a checkpoint remembers besides tensors. */
interface RunState {
  version: 1;
  /** Whole epochs trained. */
  epochsDone: number;
  /** Optimizer steps taken in epoch `epochsDone + 1` before an interruption, with that epoch's running sums. */
  partial: { batches: number; seen: number; lossSum: number; correct: number; seconds: number } | null;
  /** Index into the phases of the optimizer state saved with it. */
  phase: number;
  history: EpochRow[];
  best: FinetuneResult['best'];
  stale: number;
}

/** The run folder's checkpoints: the last state (every epoch and on interruption) and the best weights. */
export function checkpointPaths(out: string): { last: string; best: string } {
  return { last: join(out, 'checkpoints', 'last.ckpt'), best: join(out, 'checkpoints', 'best.ckpt') };
}

/** Fine-tunes a registry model on a folder dataset and writes the run folder (locked while the run lasts). */
export async function finetune(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<FinetuneResult> {
  if (options.batchSize % options.accumulate !== 0) {
    throw new UsageError(`--batch-size ${options.batchSize} must be a multiple of --accumulate ${options.accumulate}.`);
  }
  // Before any slow work: a run folder that cannot be written fails now, not after decoding every image.
  const folder = await openRunFolder(options.out, { data: options.data, unique: options.uniqueOut ?? false, resume: options.resume ?? false });
  let wrote = false;
  try {
    const result = await train(tf, backend, { ...options, out: folder.dir }, () => void (wrote = true));
    wrote = true;
    return result;
  } finally {
    folder.release({ discard: !wrote });
  }
}

async function train(tf: Tf, backend: BackendInfo, options: FinetuneOptions, writing: () => void): Promise<FinetuneResult> {
  const runStarted = performance.now();
  const headEpochs = options.headEpochs ?? 0;
  const paths = checkpointPaths(options.out);
  // Read first: a missing or damaged checkpoint should fail before any slow work.
  const checkpoint = options.resume ? await readCheckpoint<RunState>(paths.last) : null;
  if (checkpoint && checkpoint.state.version !== 1) throw new TlError('E_CHECKPOINT', `${paths.last} has checkpoint version ${String(checkpoint.state.version)}; this tl reads version 1.`);
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  const backbone = source.model;
  const size = options.inputSize ?? source.inputSize;
  const totalEpochs = headEpochs + options.epochs;
  let dataset: Dataset;
  try {
    dataset = await openDataset(options.data, {
      val: options.val, test: options.test, seed: options.seed, size, resize: options.resize, maxPixels: options.maxPixels,
      onProgress: (done, total) => options.onProgress?.({ phase: 'decode', epoch: 0, epochs: totalEpochs, done, total }),
      shouldStop: () => Boolean(options.interrupt?.stop),
    });
  } catch (err) {
    backbone.dispose();
    throw err;
  }
  if (options.interrupt?.stop) {
    backbone.dispose();
    const signal = options.interrupt.stop === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
    throw new InterruptedError(signal, `Interrupted by ${signal} while decoding images; nothing was trained${options.resume ? '' : ' or written'}.`);
  }
  if (dataset.splits.train.length === 0) {
    backbone.dispose();
    throw new UsageError(`No training images left in ${options.data} after holding out val and test.`);
  }
  const warnings = datasetWarnings(dataset, options);
  for (const w of warnings) notice(w);
  const splitRecord = { root: dataset.root, seed: options.seed, val: options.val, test: options.test, layout: dataset.layout, files: dataset.splitMap };

  const frozenCount = resolveFreeze(backbone, options.freeze, options.model);
  const layerCount = backbone.layers.length;
  if (headEpochs > 0 && frozenCount >= layerCount) {
    backbone.dispose();
    throw new UsageError(`--head-epochs ${headEpochs} needs --freeze below the whole backbone (${layerCount} layers): the second phase would train the head only too.`);
  }
  const full = attachHead(tf, backbone, { classes: dataset.classes.length, ...(options.headHidden ? { hidden: options.headHidden } : {}), dropout: options.dropout, name: `${source.name.split(' ')[0]!.replace(/\W/g, '_')}_finetuned` });
  initializeWeights(tf, full, mixSeed(options.seed, 17), new Set(full.layers.slice(layerCount).map((l) => l.name)));

  const lr = options.lr === 'auto' ? (frozenCount >= layerCount || headEpochs > 0 ? 1e-3 : 1e-4) : options.lr;
  const phases: PhaseInfo[] =
    headEpochs > 0
      ? [
          { name: 'head', first: 1, last: headEpochs, frozenLayers: layerCount, lr },
          { name: 'finetune', first: headEpochs + 1, last: totalEpochs, frozenLayers: frozenCount, lr: options.finetuneLr ?? lr / 10 },
        ]
      : [{ name: 'train', first: 1, last: totalEpochs, frozenLayers: frozenCount, lr }];
  const optimizerConfig: OptimizerConfig = { optimizer: options.optimizer ?? 'adam', momentum: options.momentum ?? (options.optimizer === 'sgd' ? 0.9 : 0), nesterov: options.nesterov ?? false };
  const loss: LossConfig = {
    labelSmoothing: options.labelSmoothing ?? 0,
    classWeights: options.classWeight === 'balanced' ? balancedClassWeights(dataset.splits.train.map((i) => i.label), dataset.classes.length) : null,
  };
  const stepsPerEpoch = Math.ceil(dataset.splits.train.length / options.batchSize);
  const schedule: ScheduleConfig = {
    schedule: options.schedule ?? 'constant',
    warmupSteps: Math.round((options.warmupEpochs ?? 0) * stepsPerEpoch),
    stepSteps: (options.stepEpochs ?? Math.max(1, Math.round(options.epochs / 3))) * stepsPerEpoch,
    gamma: options.gamma ?? 0.1,
  };
  const config = { ...effectiveConfig(options), lr, phases, optimizer: optimizerConfig.optimizer, momentum: optimizerConfig.momentum, nesterov: optimizerConfig.nesterov, inputSize: size, classWeights: loss.classWeights, backend: backend.label, frozenLayers: frozenCount };

  const monitor = options.monitor ?? 'val_loss';
  const better = (a: number, b: number) => (monitor === 'val_loss' ? a < b : a > b);
  // In layer order: tfjs's `model.weights` lists trainable weights first, so its order changes with the phase.
  const variables = full.layers.flatMap((l) => l.weights);
  const snapshot = () => tf.tidy(() => variables.map((w) => tf.keep(w.read().clone())));
  const restore = (values: Tensor[]) => tf.tidy(() => variables.forEach((w, i) => w.write(values[i]!.clone())));
  const weightArrays = () => toArrays(variables.map((w) => ({ name: w.originalName, tensor: w.read() })));
  let history: EpochRow[] = [];
  let best: FinetuneResult['best'] = null;
  let stale = 0;
  let startEpoch = 1;
  let partial: RunState['partial'] = null;
  let bestWeights: Tensor[];
  if (checkpoint) {
    const saved = JSON.parse(await readFile(join(options.out, 'split.json'), 'utf8').catch(() => 'null')) as { files?: unknown } | null;
    if (saved && JSON.stringify(saved.files) !== JSON.stringify(dataset.splitMap)) {
      full.dispose();
      throw new UsageError(`The images in ${options.data} differ from those the run in ${options.out} started with, so it cannot be resumed exactly.`, { suggestion: 'Restore the dataset, or start a new run.' });
    }
    setWeightsFrom(tf, variables, checkpoint.groups.weights ?? [], paths.last);
    ({ history, best, stale, partial } = checkpoint.state);
    startEpoch = checkpoint.state.epochsDone + 1;
    if (startEpoch > totalEpochs) {
      full.dispose();
      throw new UsageError(`The run in ${options.out} has already trained all ${totalEpochs} epochs.`, { suggestion: `Pass --epochs with a larger number to train on.` });
    }
  }
  if (best !== null && existsSync(paths.best)) {
    const saved = await readCheckpoint<unknown>(paths.best);
    const current = snapshot();
    setWeightsFrom(tf, variables, saved.groups.weights ?? [], paths.best);
    bestWeights = snapshot();
    restore(current);
    tf.dispose(current);
  } else {
    bestWeights = snapshot();
  }
  writing();
  await writeJsonAtomic(join(options.out, 'config.json'), config);
  await writeJsonAtomic(join(options.out, 'split.json'), splitRecord);

  let stopReason: string | null = null;
  const tensorsAfterEpoch: number[] = [];
  const cacheStats = { enabled: false, hits: 0, misses: 0, spilled: 0 };
  let boundaryLayers: string[] = [];
  const resumedFrom = checkpoint ? { epoch: startEpoch, batches: partial?.batches ?? 0 } : null;
  const tails: LayersModel[] = [];
  const kept = { probs: [] as Float32Array[], labels: [] as number[], paths: [] as string[] };
  let test: { loss: number; accuracy: number } | null = null;

  try {
    for (const [phaseIndex, phase] of phases.entries()) {
      if (stopReason !== null) break;
      if (phase.last < startEpoch) continue;
      const frozenNames = new Set(backbone.layers.slice(0, phase.frozenLayers).map((l) => l.name));
      applyTrainability(full, frozenNames, options.bn);
      const cut = cutModel(tf, full, frozenNames);
      if (cut.tail !== full) tails.push(cut.tail);
      boundaryLayers = cut.frozen ? cut.boundaryLayers : [];
      const useCache = cut.frozen !== null && options.augment === 'none';
      cacheStats.enabled ||= useCache;
      const cache = useCache ? new FeatureCache(cut.boundaryShapes, options.featureCacheBytes, options.out) : null;
      const optimizer = createOptimizer(tf, optimizerConfig, phase.lr);
      // Everything that keeps the process alive (worker threads, the ONNX session) is closed in the finally below,
      // whichever of them failed to start.
      let pool: ReplicaPool | null = null;
      let session: OnnxSession | null = null;
      let onnxTail: OnnxTail | null = null;
      try {
        if (options.engine === 'onnx') {
          try {
            onnxTail = await OnnxTail.open(tf, cut.tail, { optimizer: optimizerConfig, loss, weightDecay: options.weightDecay ?? 0 });
          } catch (err) {
            if (!(err instanceof TrainStepCompileError)) throw err;
            notice(`the ${phase.name} phase trains on TensorFlow.js: ${err.message}`);
          }
        }
        phase.engine = onnxTail ? 'onnx' : 'tfjs';
        // Replicas compute tfjs gradients and run a tfjs frozen part: ONNX Runtime needs neither.
        pool = options.workers > 1 && onnxTail === null ? await ReplicaPool.start(cut.tail, { count: options.workers - 1, backend: backend.name, bn: options.bn }) : null;
        session = cut.frozen && options.engine === 'onnx' ? await onnxSessionFor(cut.frozen, options.store ? { store: options.store } : {}) : null;
        const engine = new Engine(tf, cut, source.preprocess, dataset, cache, pool, session, onnxTail);
        const optimizerState = checkpoint?.groups.optimizer;
        if (checkpoint && checkpoint.state.phase === phaseIndex && optimizerState && optimizerState.length > 0) {
          const tensors = toTensors(tf, optimizerState);
          await optimizer.setWeights(tensors);
          tf.dispose(tensors.map((t) => t.tensor));
        }
        await onnxTail?.load(optimizer);
        const phaseSteps = (phase.last - phase.first + 1) * stepsPerEpoch;
        stale = startEpoch > phase.first ? stale : 0;
        let lastLr = phase.lr;
        const saveLast = async (epochsDone: number, inEpoch: RunState['partial']) => {
          const state: RunState = { version: 1, epochsDone, partial: inEpoch, phase: phaseIndex, history, best, stale };
          let arrays: NamedArray[];
          if (onnxTail) {
            onnxTail.syncWeights();
            arrays = onnxTail.optimizerState();
          } else {
            const opt = await optimizer.getWeights();
            arrays = await toArrays(opt);
            tf.dispose(opt.filter((o) => o.name === 'iter').map((o) => o.tensor));
          }
          await writeCheckpoint(paths.last, state, { weights: await weightArrays(), optimizer: arrays });
        };
        for (let epoch = Math.max(phase.first, startEpoch); epoch <= phase.last && stopReason === null; epoch++) {
          const resumed = epoch === startEpoch ? partial : null;
          const started = performance.now() - (resumed?.seconds ?? 0) * 1000;
          let seen = resumed?.seen ?? 0;
          let lossSum = resumed?.lossSum ?? 0;
          let correct = resumed?.correct ?? 0;
          let batchIndex = resumed?.batches ?? 0;
          const total = dataset.splits.train.length;
          const batches = dataset.source.batches(dataset.splits.train, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, epoch), augment: options.augment, augmentSeed: mixSeed(options.seed, epoch, 7), skip: batchIndex });
          for await (const batch of batches) {
            lastLr = scheduledLr(phase.lr, (epoch - phase.first) * stepsPerEpoch + batchIndex, phaseSteps, schedule);
            setLearningRate(optimizer, lastLr);
            const step = await engine.trainStep(batch, optimizer, { lr: lastLr, accumulate: options.accumulate, loss, dropoutSeed: mixSeed(options.seed, epoch, batchIndex, 3), weightDecay: (options.weightDecay ?? 0) > 0 ? { lr: lastLr, decay: options.weightDecay! } : null });
            // Clipped probabilities can hide a divergence from the loss (a clamp turns NaN into a bound), so weights are checked too.
            const diverged = !Number.isFinite(step.loss) ? `the loss became ${step.loss}` : engine.weightsFinite() ? null : 'the weights became NaN or infinite';
            if (diverged !== null) {
              stopReason = `${diverged} in epoch ${epoch} after ${seen + batch.items.length} images; training stopped and the ${best ? `best epoch's (${best.epoch})` : 'initial'} weights were kept`;
              break;
            }
            batchIndex++;
            seen += batch.items.length;
            lossSum += step.loss * batch.items.length;
            correct += step.correct;
            if (options.interrupt?.stop) {
              stopReason = `interrupted by ${options.interrupt.stop} in epoch ${epoch} after ${seen} of ${total} images`;
              await saveLast(epoch - 1, { batches: batchIndex, seen, lossSum, correct, seconds: (performance.now() - started) / 1000 });
              break;
            }
            const elapsed = (performance.now() - started) / 1000;
            options.onProgress?.({ phase: 'train', epoch, epochs: totalEpochs, done: seen, total, loss: lossSum / seen, accuracy: correct / seen, imagesPerSecond: seen / elapsed, etaSeconds: (elapsed / seen) * (total - seen) });
          }
          if (stopReason !== null) break;
          // Validation, the best weights and the checkpoint read the tfjs variables.
          onnxTail?.syncWeights();
          const trainSeconds = (performance.now() - started) / 1000;
          const val = dataset.splits.val.length > 0 ? await engine.evaluate(dataset.splits.val, options.batchSize, (done, n) => options.onProgress?.({ phase: 'validate', epoch, epochs: totalEpochs, done, total: n })) : null;
          history.push({ epoch, loss: lossSum / seen, accuracy: correct / seen, val_loss: val?.loss ?? null, val_accuracy: val?.accuracy ?? null, lr: lastLr, seconds: (performance.now() - started) / 1000, img_per_s: seen / trainSeconds });
          options.onProgress?.({ phase: 'epoch', epoch, epochs: totalEpochs, done: total, total, row: history.at(-1)! });
          await writeMetricsCsv(join(options.out, 'metrics.csv'), history);
          const value = val === null ? null : monitor === 'val_loss' ? val.loss : val.accuracy;
          if (value !== null && (best === null || better(value, best.value))) {
            best = { epoch, monitor, value };
            tf.dispose(bestWeights);
            bestWeights = snapshot();
            await writeCheckpoint(paths.best, { epoch }, { weights: await weightArrays() });
            stale = 0;
          } else if (value !== null && options.patience !== undefined && phaseIndex === phases.length - 1 && ++stale >= options.patience) {
            // Early stopping watches the last phase only: the head phase is short and always runs whole.
            stopReason = `early stopping: ${monitor} did not improve for ${options.patience} epoch${options.patience === 1 ? '' : 's'} after epoch ${best!.epoch}`;
          }
          // A later phase starts from the best weights so far, as a second Keras fit after restore_best_weights would.
          if (epoch >= phase.last && phaseIndex < phases.length - 1 && best !== null) restore(bestWeights);
          await saveLast(epoch, null);
          tensorsAfterEpoch.push(tf.memory().numTensors);
        }
        if (stopReason !== null || phaseIndex === phases.length - 1) {
          // Like Keras's restore_best_weights: the saved model is the best epoch's (the current weights when nothing
          // was validated or training was interrupted before validation; the initial ones after a divergence in
          // epoch 1). The test split then goes through this phase's cut: its frozen part on the replicas or ONNX Runtime.
          const interrupted = stopReason?.startsWith('interrupted') === true;
          if (best !== null || (stopReason !== null && !interrupted)) restore(bestWeights);
          // An interrupted run stops promptly: its test split is evaluated when it is resumed and finishes.
          if (dataset.splits.test.length > 0 && !interrupted) test = await engine.evaluate(dataset.splits.test, options.batchSize, undefined, kept);
        }
      } finally {
        cacheStats.hits += cache?.hits ?? 0;
        cacheStats.misses += cache?.misses ?? 0;
        cacheStats.spilled = Math.max(cacheStats.spilled, cache?.spilled ?? 0);
        await pool?.close();
        await session?.close();
        await onnxTail?.close();
        cache?.dispose();
        disposeOptimizer(optimizer);
      }
      partial = null;
    }
    const metrics = test ? computeMetrics(concat(kept.probs), kept.labels, dataset.classes, { paths: kept.paths }) : null;

    seedDropout(full, null);
    await saveLayersModel(tf, full, join(options.out, 'model'), { tl: { model: source.name.split(' ')[0], classes: dataset.classes, preprocess: source.preprocess, inputSize: size } });
    await writeJsonAtomic(join(options.out, 'labels.json'), dataset.classes);
    // model.onnx beside the tfjs model, for native inference elsewhere; a model with a layer ONNX cannot express
    // still gets its run folder.
    let onnxFile: string | null = join(options.out, 'model.onnx');
    let onnxError: string | null = null;
    try {
      await writeFileAtomic(onnxFile, exportOnnx(full, { name: source.name.split(' ')[0]! }));
    } catch (err) {
      if (!(err instanceof OnnxExportError)) throw err;
      onnxFile = null;
      onnxError = err.message;
    }
    const lookups = cacheStats.hits + cacheStats.misses;
    const result: FinetuneResult = {
      outDir: options.out,
      classes: dataset.classes,
      history,
      phases,
      test: test ? { ...test, count: dataset.splits.test.length } : null,
      frozenLayers: frozenCount,
      totalLayers: layerCount,
      trainableParams: countTrainable(full, backbone, frozenCount, options.bn),
      boundaryLayers,
      cache: { enabled: cacheStats.enabled, hitRate: lookups === 0 ? 0 : cacheStats.hits / lookups, spilled: cacheStats.spilled },
      best,
      stopReason,
      resumedFrom,
      onnx: onnxFile ?? `not written: ${onnxError}`,
      metrics,
      tensorsAfterEpoch,
      wasmHeapBytes: wasmHeapBytes(),
      skipped: dataset.skipped,
      warnings,
    };
    const { outDir: _outDir, ...rest } = result;
    await writeReports(options.out, { schemaVersion: REPORT_SCHEMA_VERSION, kind: 'finetune', tlVersion: TL_VERSION, createdAt: new Date().toISOString(), backend: backend.label, model: source.name, data: options.data, config, seconds: (performance.now() - runStarted) / 1000, ...rest });
    return result;
  } finally {
    tf.dispose(bestWeights);
    // tfjs counts a layer's references per application: tail layers were applied twice (full and tail), frozen
    // layers once, so each tail is disposed and the frozen containers (which own nothing of their own) are not.
    for (const tail of tails) tail.dispose();
    full.dispose();
  }
}

/** Ratio of the largest to the smallest class in the training split above which --class-weight is suggested. */
const IMBALANCE = 10;

/** Classes that a split misses (so its metrics do not cover them) and heavy imbalance, in words. */
function datasetWarnings(dataset: Dataset, options: FinetuneOptions): string[] {
  const out: string[] = [];
  if (dataset.splits.val.length > 0 || options.val > 0) {
    for (const c of classesMissingFrom(dataset, 'val')) out.push(`class '${c}' has no validation images: validation loss, early stopping and the best epoch do not cover it`);
  }
  if (dataset.splits.test.length > 0 || options.test > 0) {
    for (const c of classesMissingFrom(dataset, 'test')) out.push(`class '${c}' has no test images: the test metrics do not cover it`);
  }
  const counts = dataset.classes.map((_, label) => dataset.splits.train.filter((i) => i.label === label).length);
  dataset.classes.forEach((c, label) => {
    if (counts[label] === 0) out.push(`class '${c}' has no training images: the model cannot learn it`);
  });
  const most = Math.max(...counts);
  const least = Math.min(...counts);
  if (options.classWeight !== 'balanced' && least > 0 && most / least >= IMBALANCE) {
    const name = (n: number) => dataset.classes[counts.indexOf(n)]!;
    out.push(`the classes are heavily imbalanced (${most} training images of '${name(most)}', ${least} of '${name(least)}'); --class-weight balanced weighs them evenly`);
  }
  return out;
}

/** Trainable parameters of the last phase's setting. */
function countTrainable(full: LayersModel, backbone: LayersModel, frozenCount: number, bn: BnMode): number {
  applyTrainability(full, new Set(backbone.layers.slice(0, frozenCount).map((l) => l.name)), bn);
  return full.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/** Sets every weight (in layer order) from a checkpoint's arrays, checking that names and shapes match. */
function setWeightsFrom(tf: Tf, weights: LayerVariable[], arrays: NamedArray[], path: string): void {
  if (arrays.length !== weights.length) throw new TlError('E_CHECKPOINT', `${path} holds ${arrays.length} weights; the model has ${weights.length}. It was written for another model or configuration.`);
  weights.forEach((w, i) => {
    const a = arrays[i]!;
    if (a.name !== w.originalName || a.shape.join(',') !== w.shape.join(',')) throw new TlError('E_CHECKPOINT', `${path}: weight ${i} is '${a.name}' [${a.shape.join(',')}]; the model expects '${w.originalName}' [${w.shape.join(',')}].`);
  });
  tf.tidy(() => weights.forEach((w, i) => w.write(tf.tensor(arrays[i]!.data, arrays[i]!.shape))));
}

interface StepOptions {
  lr: number;
  accumulate: number;
  loss: LossConfig;
  /** Seeds this step's dropout masks (each shard mixes in its index). */
  dropoutSeed: number;
  weightDecay: { lr: number; decay: number } | null;
}

/** The per-batch work: boundary tensors (cached or computed), a training step on the tail, evaluation. */
class Engine {
  private readonly floats: number[];

  constructor(
    private readonly tf: Tf,
    private readonly cut: Cut,
    private readonly preprocessMode: PreprocessMode,
    private readonly dataset: Dataset,
    private readonly cache: FeatureCache | null,
    private readonly pool: ReplicaPool | null,
    private readonly onnx: OnnxSession | null = null,
    private readonly onnxTail: OnnxTail | null = null,
  ) {
    this.floats = cut.boundaryShapes.map((s) => s.reduce((a, b) => a * b, 1));
  }

  private pixelsTensor(pixels: Uint8Array, n: number): Tensor {
    const size = this.dataset.source.size;
    return this.tf.tidy(() => preprocess(this.tf, this.tf.tensor4d(Float32Array.from(pixels), [n, size, size, 3]), this.preprocessMode));
  }

  /** The tail's inputs for a batch, one joined array per input: from the cache, or by running the frozen part. */
  async boundary(batch: Batch): Promise<Float32Array[]> {
    const n = batch.items.length;
    if (this.cut.frozen === null) {
      const x = this.pixelsTensor(batch.pixels, n);
      const data = (await x.data()) as Float32Array;
      x.dispose();
      return [data];
    }
    const perImage: (Float32Array[] | undefined)[] = batch.items.map((item) => this.cache?.get(item.path));
    const missing = perImage.flatMap((v, i) => (v === undefined ? [i] : []));
    if (missing.length > 0) {
      const imageBytes = this.dataset.source.imageBytes;
      const pixels = new Uint8Array(missing.length * imageBytes);
      missing.forEach((i, k) => pixels.set(batch.pixels.subarray(i * imageBytes, (i + 1) * imageBytes), k * imageBytes));
      const data = await this.runFrozen(pixels, missing.length);
      missing.forEach((i, k) => {
        const tensors = data.map((d, b) => d.slice(k * this.floats[b]!, (k + 1) * this.floats[b]!));
        perImage[i] = tensors;
        this.cache?.set(batch.items[i]!.path, tensors);
      });
    }
    return this.floats.map((floats, b) => {
      const joined = new Float32Array(n * floats);
      perImage.forEach((t, i) => joined.set(t![b]!, i * floats));
      return joined;
    });
  }

  /** The frozen part's outputs for `m` images, one joined array per boundary tensor; shards go to the replicas. */
  private async runFrozen(pixels: Uint8Array, m: number): Promise<Float32Array[]> {
    const frozen = this.cut.frozen!;
    const size = this.dataset.source.size;
    if (this.onnx) return this.onnx.run([{ data: preprocessPixels(pixels, this.preprocessMode), shape: [m, size, size, 3] }]);
    const perImage = size * size * 3;
    const parts = this.pool ? Math.min(m, this.pool.size + 1) : 1;
    const counts = Array.from({ length: parts }, (_, i) => Math.floor(m / parts) + (i < m % parts ? 1 : 0));
    let remote: Promise<Float32Array[][]> = Promise.resolve([]);
    if (this.pool && parts > 1) {
      await this.ensureFrozenOnReplicas();
      const x = this.pixelsTensor(pixels.subarray(counts[0]! * perImage), m - counts[0]!);
      const all = (await x.data()) as Float32Array;
      x.dispose();
      let at = 0;
      remote = this.pool.infer(counts.slice(1).map((count) => {
        const input = { shape: [count, size, size, 3], data: all.slice(at * perImage, (at + count) * perImage) };
        at += count;
        return input;
      }));
    }
    const outputs = this.tf.tidy(() => {
      const y = frozen.predict(this.pixelsTensor(pixels.subarray(0, counts[0]! * perImage), counts[0]!), { batchSize: counts[0]! });
      return Array.isArray(y) ? y : [y];
    });
    const local = await Promise.all(outputs.map((o) => o.data() as Promise<Float32Array>));
    this.tf.dispose(outputs);
    const shards = [local, ...(await remote)];
    return this.floats.map((floats, b) => {
      const joined = new Float32Array(m * floats);
      let at = 0;
      shards.forEach((shard, k) => {
        joined.set(shard[b]!, at * floats);
        at += counts[k]!;
      });
      return joined;
    });
  }

  private frozenLoaded: Promise<void> | null = null;

  private ensureFrozenOnReplicas(): Promise<void> {
    this.frozenLoaded ??= this.pool!.loadFrozen(this.cut.frozen!);
    return this.frozenLoaded;
  }

  private tensors(arrays: Float32Array[], n: number): Tensor[] {
    return this.cut.boundaryShapes.map((shape, b) => this.tf.tensor(arrays[b]!, [n, ...shape]));
  }

  /** One optimizer step over `batch`: shards on the worker replicas and here, `accumulate` micro-batches each. */
  async trainStep(batch: Batch, optimizer: Optimizer, step: StepOptions): Promise<{ loss: number; correct: number }> {
    if (this.onnxTail) return this.onnxTail.step(await this.boundary(batch), this.cut.boundaryShapes, batch.labels, step.lr, step.dropoutSeed);
    const tf = this.tf;
    const tail = this.cut.tail;
    const n = batch.items.length;
    const arrays = await this.boundary(batch);
    const parts = this.pool ? Math.min(n, this.pool.size + 1) : 1;
    const counts = Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
    const starts = counts.map((_, i) => counts.slice(0, i).reduce((a, b) => a + b, 0));
    const spec = (k: number) => ({ classes: this.dataset.classes.length, accumulate: step.accumulate, scale: counts[k]! / n, loss: step.loss, dropoutSeed: mixSeed(step.dropoutSeed, k) });
    let remote: Promise<ShardResult[]> = Promise.resolve([]);
    if (this.pool && parts > 1) {
      // Weights go out first so the replicas work while this thread computes its own shard.
      const weights = tail.weights.map((w) => ({ name: w.originalName, data: w.read().dataSync() as Float32Array }));
      const shards: Shard[] = counts.slice(1).map((count, k) => {
        const start = starts[k + 1]!;
        return {
          inputs: this.floats.map((floats, b) => ({ shape: [count, ...this.cut.boundaryShapes[b]!], data: arrays[b]!.slice(start * floats, (start + count) * floats) })),
          labels: batch.labels.slice(start, start + count),
          spec: spec(k + 1),
        };
      });
      remote = this.pool.step(weights, shards);
    }
    const localCount = counts[0]!;
    const inputs = this.tensors(arrays.map((a, b) => a.subarray(0, localCount * this.floats[b]!)), localCount);
    let local: Awaited<ReturnType<typeof shardGradients>>;
    try {
      local = await shardGradients(tf, tail, inputs, batch.labels.subarray(0, localCount), spec(0));
    } finally {
      tf.dispose(inputs);
    }
    const others = await remote;
    const trainable = tail.trainableWeights;
    const grads: Record<string, Tensor> = tf.tidy(() =>
      Object.fromEntries(
        trainable.map((w, i) => {
          let g = local.grads[i]!;
          for (const r of others) g = tf.add(g, tf.tensor(r.grads.get(w.originalName)!, w.shape as number[]));
          return [(w.read() as ReturnType<Tf['variable']>).name, g];
        }),
      ),
    );
    if (step.weightDecay) applyWeightDecay(tf, trainable.map((w) => w.read()), step.weightDecay.lr, step.weightDecay.decay);
    optimizer.applyGradients(grads as Record<string, ReturnType<Tf['variable']>>);
    tf.dispose([...local.grads, ...Object.values(grads)]);
    return { loss: (local.lossSum + others.reduce((a, r) => a + r.lossSum, 0)) / n, correct: local.correct + others.reduce((a, r) => a + r.correct, 0) };
  }

  /** Whether every trainable weight of the tail is finite. */
  weightsFinite(): boolean {
    if (this.onnxTail) return this.onnxTail.weightsFinite();
    const tf = this.tf;
    const ok = tf.tidy(() => tf.all(tf.stack(this.cut.tail.trainableWeights.map((w) => tf.all(tf.isFinite(w.read()))))));
    const value = ok.dataSync()[0] === 1;
    ok.dispose();
    return value;
  }

  /** Loss and accuracy over `items` in inference mode. */
  async evaluate(items: ImageItem[], batchSize: number, onProgress?: (done: number, total: number) => void, keep?: { probs: Float32Array[]; labels: number[]; paths: string[] }): Promise<{ loss: number; accuracy: number }> {
    const tf = this.tf;
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for await (const batch of this.dataset.source.batches(items, { batchSize })) {
      const inputs = this.tensors(await this.boundary(batch), batch.items.length);
      const [loss, hits, probs] = tf.tidy(() => {
        const probs = this.cut.tail.predict(inputs.length === 1 ? inputs[0]! : inputs, { batchSize: batch.items.length }) as Tensor;
        const labels = tf.tensor1d(batch.labels, 'int32');
        return [tf.mul(crossEntropy(tf, probs, tf.oneHot(labels, this.dataset.classes.length)), batch.items.length), tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), labels), 'float32')), probs];
      });
      lossSum += (await loss.data())[0]!;
      correct += (await hits.data())[0]!;
      if (keep) {
        keep.probs.push((await probs.data()) as Float32Array);
        keep.labels.push(...batch.labels);
        keep.paths.push(...batch.items.map((i) => i.path));
      }
      tf.dispose([loss, hits, probs, ...inputs]);
      seen += batch.items.length;
      onProgress?.(seen, items.length);
    }
    return { loss: lossSum / Math.max(1, seen), accuracy: correct / Math.max(1, seen) };
  }
}

/** The options as saved with a run (everything but callbacks). */
function effectiveConfig(options: FinetuneOptions): Omit<FinetuneOptions, 'onProgress' | 'onDownload' | 'interrupt' | 'resume' | 'store'> {
  const { onProgress: _onProgress, onDownload: _onDownload, interrupt: _interrupt, resume: _resume, store: _store, ...config } = options;
  return config;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function writeMetricsCsv(path: string, rows: EpochRow[]): Promise<void> {
  const columns: (keyof EpochRow)[] = ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr', 'seconds', 'img_per_s'];
  const fmt = (v: number | null) => (v === null ? '' : Number.isInteger(v) ? String(v) : v.toPrecision(6));
  await writeFileAtomic(path, `${columns.join(',')}\n${rows.map((r) => columns.map((c) => fmt(r[c])).join(',')).join('\n')}\n`);
}

