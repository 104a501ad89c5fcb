// Fine-tuning: the frozen part runs once per image in inference mode (cached), the tail trains on its outputs.
import { existsSync, rmSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { wasmHeapBytes, type BackendInfo, type LayersModel, type LayerVariable, type Tensor, type Tf } from '../backend/index.js';
import { applyTrainability, attachHead, cutModel, resolveFreeze, type BnMode, type Cut, type FreezeSpec } from '../cut/index.js';
import { classesMissingFrom, openDataset, SPLITS, type AugmentLevel, type Batch, type Dataset, type ResizeMode } from '../data/index.js';
import { onnxSessionFor } from '../engine/index.js';
import { InterruptedError, TlError, UsageError } from '../errors.js';
import { fitTemperature, temper, temperatureDecision } from '../metrics/calibration.js';
import { computeMetrics, nonFiniteRows, type Metrics } from '../metrics/classification.js';
import { TrainStepCompileError, type TrainStepGraph } from '../onnx/train-step.js';
import type { PreprocessMode } from '../registry/index.js';
import { initializeWeights } from '../registry/init.js';
import type { LossConfig } from '../replicas/gradients.js';
import { ReplicaPool } from '../replicas/pool.js';
import { REPORT_SCHEMA_VERSION, writeReports } from '../report/index.js';
import type { Calibration, CalibrationEffect } from '../report/schema.js';
import { mixSeed } from '../util/random.js';
import { notice } from '../util/notice.js';
import { TL_VERSION } from '../version.js';
import { loadBackbone, type Backbone } from '../weights/backbone.js';
import type { DownloadProgress } from '../weights/download.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { loadCacheArrays, readCache, type CacheRecord } from '../frozen/folder.js';
import { FeatureCache } from '../frozen/cache.js';
import { FrozenPart, type KeptOutputs } from '../frozen/part.js';
import { OnnxTail } from '../onnx/tail.js';
import { nchwcTarget, OnnxTrainer, type TailTrainerConfig } from '../step/onnx.js';
import { preciseBnSample, recomputeBatchNorm, setBatchNormMomentum } from './precise-bn.js';
import { digestWeights } from '../shard/index.js';
import { chooseFreezeDepth, PROBE_EPOCHS, type FreezeAutoResult } from './freeze-auto.js';
import { rangeTest, writeLrFind, type LrFindResult, type LrFindSpec } from './lr-find.js';
import { balancedClassWeights, scheduledLr, type OptimizerConfig, type OptimizerName, type ScheduleConfig, type ScheduleName } from '../step/optim.js';
import { openRunFolder } from './run-folder.js';
import { writeMetricsCsv, writeRunRecords, writeTrainedModel, type EpochRow } from './run-output.js';
import { TfjsTrainer } from '../step/tfjs.js';
import { toArrays, type NamedArray, type StepInput, type Trainer } from '../step/index.js';
import { argmax, concatFloat32 } from '../util/arrays.js';
import { parseOptions } from '../util/options.js';
import { settingsSchema, type Settings, type SettingsInput } from '../options/finetune.js';

export type { EpochRow } from './run-output.js';

/** How a run is driven, besides its settings (options/finetune.ts): its data and folder, callbacks, interruption. */
export interface RunControl {
  data: string;
  out: string;
  /** Continue the run in `out` from its last checkpoint. */
  resume?: boolean;
  /** `out` is a default name: if it exists, use `out-2`, `out-3`, ... instead (the result says which). */
  uniqueOut?: boolean;
  /** A short trial run another step deletes after reading its result (`--freeze auto`'s probes): no advice to train it on. */
  trial?: boolean;
  store?: string;
  onProgress?: (event: ProgressEvent) => void;
  onDownload?: (p: DownloadProgress) => void;
  /** Set `stop` (e.g. on SIGINT) to end training after the current batch; the run folder is still written. */
  interrupt?: { stop: string | null; signal?: AbortSignal };
}

/** What `finetune()` takes: settings (each one left out takes its default from options/finetune.ts) and the control. */
export type FinetuneOptions = SettingsInput & RunControl;

/** The options once parsed: every setting given or defaulted, within its limits; `--workers auto` resolved. */
type RunOptions = Omit<Settings, 'workers'> & { workers: number } & RunControl;

/**
 * Parses the settings with their one schema (defaults and limits; a bad value is a usage error naming its flag) and
 * resolves `--workers auto`: one per core on wasm and cpu, 1 on tensorflow (which threads itself).
 */
function resolveOptions(options: FinetuneOptions, backend: BackendInfo): RunOptions {
  const { data, out, resume, uniqueOut, trial, store, onProgress, onDownload, interrupt } = options;
  const control: RunControl = { data, out, ...(resume !== undefined ? { resume } : {}), ...(uniqueOut !== undefined ? { uniqueOut } : {}), ...(trial !== undefined ? { trial } : {}), ...(store !== undefined ? { store } : {}), ...(onProgress ? { onProgress } : {}), ...(onDownload ? { onDownload } : {}), ...(interrupt ? { interrupt } : {}) };
  const settings = parseOptions(settingsSchema, options);
  const workers = settings.workers === 'auto' ? (backend.name === 'tensorflow' ? 1 : availableParallelism()) : settings.workers;
  return { ...settings, workers, ...control };
}

export interface ProgressEvent {
  /** `features`: the frozen part's outputs computed once, before a phase trains on them. */
  phase: 'decode' | 'features' | 'train' | 'validate' | 'epoch' | 'lr-find';
  /** Which training phase the epoch belongs to (train, validate and epoch events). */
  stage?: PhaseInfo['name'];
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
  /** The frozen part's outputs computed before training: how many images, in how many seconds (null: none). */
  frozenPass: { images: number; seconds: number } | null;
  /** The epoch whose weights were saved (the best by `monitor`), and its value. */
  best: { epoch: number; monitor: string; value: number } | null;
  /** Why training ended before the last epoch, if it did. */
  stopReason: string | null;
  /** The temperature folded into the classifier after training, with log-loss and ECE before and after. */
  calibration: Calibration | null;
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
  /** sha256 of the weights no phase trains (not stored in the checkpoint); absent in checkpoints that hold every weight. */
  frozenDigest?: string;
}

/** The run folder's checkpoints: the last state (every epoch and on interruption) and the best weights. */
export function checkpointPaths(out: string): { last: string; best: string } {
  return { last: join(out, 'checkpoints', 'last.ckpt'), best: join(out, 'checkpoints', 'best.ckpt') };
}

/** Fine-tunes a registry model on a folder dataset and writes the run folder (locked while the run lasts). */
export async function finetune(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<FinetuneResult> {
  return (await inRunFolder(tf, backend, resolveOptions(options, backend), 'train')) as FinetuneResult;
}

/**
 * The learning-rate range test alone (`tl lr-find`): the run's first phase set up as `finetune` would (cut, frozen-part
 * cache, trainer), the test run on it, its curve written to the run folder (lr-find.json, lr-find.svg); nothing trains.
 */
export async function lrFind(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<LrFindResult & { files: { json: string; svg: string } }> {
  return (await inRunFolder(tf, backend, resolveOptions({ ...options, lr: 'find' }, backend), 'lr-find')) as LrFindResult & { files: { json: string; svg: string } };
}

async function inRunFolder(tf: Tf, backend: BackendInfo, options: RunOptions, mode: 'train' | 'lr-find'): Promise<unknown> {
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
      for (const name of ['config.json', 'split.json', 'metrics.csv']) rmSync(join(folder.dir, name), { force: true });
      const checkpoints = join(folder.dir, 'checkpoints');
      if (existsSync(checkpoints) && statSync(checkpoints).isDirectory()) rmSync(checkpoints, { recursive: true, force: true });
      wrote = false;
    }
    throw err;
  } finally {
    folder.release({ discard: !wrote });
  }
}

/**
 * The weights of the layers that train in some phase, in layer order (tfjs's `model.weights` lists trainable weights
 * first, so its order changes with the phase). Layers frozen in every phase never change: checkpoints hold only the
 * others, with a digest of the frozen ones that a resumed run checks (the backbone is not stored a third time).
 */
class LayerOrderWeights {
  private readonly variables: LayerVariable[];
  private readonly frozen: LayerVariable[];

  constructor(
    private readonly tf: Tf,
    model: LayersModel,
    frozenLayers: number,
  ) {
    this.variables = model.layers.slice(frozenLayers).flatMap((l) => l.weights);
    this.frozen = model.layers.slice(0, frozenLayers).flatMap((l) => l.weights);
  }

  /** sha256 over the never-trained weights' names, shapes and values. */
  frozenDigest(): string {
    return digestWeights(this.frozen);
  }


  snapshot(): Tensor[] {
    return this.tf.tidy(() => this.variables.map((w) => this.tf.keep(w.read().clone())));
  }

  restore(values: Tensor[]): void {
    this.tf.tidy(() => this.variables.forEach((w, i) => w.write(values[i]!.clone())));
  }

  arrays(): Promise<NamedArray[]> {
    return toArrays(this.variables.map((w) => ({ name: w.originalName, tensor: w.read() })));
  }

  /** Sets the weights from a checkpoint's arrays (these weights, or every weight as older checkpoints hold), checking names and shapes. */
  load(arrays: NamedArray[], path: string): void {
    const weights = arrays.length === this.variables.length + this.frozen.length && this.frozen.length > 0 ? [...this.frozen, ...this.variables] : this.variables;
    if (arrays.length !== weights.length) throw new TlError('E_CHECKPOINT', `${path} holds ${arrays.length} weights; the model has ${weights.length}. It was written for another model or configuration.`);
    weights.forEach((w, i) => {
      const a = arrays[i]!;
      if (a.name !== w.originalName || a.shape.join(',') !== w.shape.join(',')) throw new TlError('E_CHECKPOINT', `${path}: weight ${i} is '${a.name}' [${a.shape.join(',')}]; the model expects '${w.originalName}' [${w.shape.join(',')}].`);
    });
    this.tf.tidy(() => weights.forEach((w, i) => w.write(this.tf.tensor(arrays[i]!.data, arrays[i]!.shape))));
  }
}

/** What stays fixed for the whole run, and what the phases carry from one to the next. */
interface Run {
  tf: Tf;
  backend: BackendInfo;
  options: RunOptions;
  source: Backbone;
  dataset: Dataset;
  full: LayersModel;
  backbone: LayersModel;
  phases: PhaseInfo[];
  bn: BnMode;
  optimizer: OptimizerConfig;
  loss: LossConfig;
  schedule: ScheduleConfig;
  stepsPerEpoch: number;
  totalEpochs: number;
  monitor: 'val_loss' | 'val_accuracy';
  paths: { last: string; best: string };
  weights: LayerOrderWeights;
  frozenDigest: string;
  checkpoint: { state: RunState; groups: Record<string, NamedArray[]> } | null;
  /** The first epoch this process trains (after a resume, the checkpoint's next one). */
  startEpoch: number;
  // Carried across epochs and phases:
  history: EpochRow[];
  best: FinetuneResult['best'];
  bestWeights: Tensor[];
  stale: number;
  partial: RunState['partial'];
  stopReason: string | null;
  tensorsAfterEpoch: number[];
  cacheStats: { enabled: boolean; hits: number; misses: number; spilled: number };
  boundaryLayers: string[];
  /** Tails cut from `full` (disposed at the end). */
  tails: LayersModel[];
  kept: KeptOutputs;
  test: { loss: number; accuracy: number } | null;
  calibration: Omit<Calibration, 'test'> | null;
  /** The range test still to run on the first phase (`--lr find`), and what to do with its result. */
  lrFind: { spec: LrFindSpec; found: (result: LrFindResult) => Promise<void> } | null;
  lrFindResult: (LrFindResult & { files: { json: string; svg: string } }) | null;
  /** `--features`: each image's boundary arrays (by path relative to the root) and the cut they were computed at. */
  features: { arrays: Map<string, Float32Array[]>; layers: string[] } | null;
  /** The frozen part's pass over the images before training (summed over phases). */
  frozenPass: FinetuneResult['frozenPass'];
}

async function train(tf: Tf, backend: BackendInfo, options: RunOptions, writing: () => void, mode: 'train' | 'lr-find'): Promise<FinetuneResult | (LrFindResult & { files: { json: string; svg: string } })> {
  const runStarted = performance.now();
  const { headEpochs } = options;
  const paths = checkpointPaths(options.out);
  // Read first: a damaged checkpoint should fail before any slow work. A run stopped before its first checkpoint (killed,
  // or its disk full) has only its config: it starts over from it.
  const checkpoint = options.resume && existsSync(paths.last) ? await readCheckpoint<RunState>(paths.last) : null;
  if (options.resume && checkpoint === null) notice(`${options.out} has no checkpoint (the run stopped before its first epoch ended): starting it over from its config.json`);
  if (checkpoint && checkpoint.state.version !== 1) throw new TlError('E_CHECKPOINT', `${paths.last} has checkpoint version ${String(checkpoint.state.version)}; this tl reads version 1.`);
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}), ...(options.interrupt?.signal ? { signal: options.interrupt.signal } : {}), keepHead: !options.newHead, ...(options.arch ? { arch: options.arch } : {}) });
  const backbone = source.model;
  const size = options.inputSize ?? source.inputSize;
  let dataset: Dataset;
  // --features: the cache's record, verified once; the images it holds outputs for are not decoded at all.
  const cacheRecord = options.features ? await readCache(options.features).catch((err: unknown) => {
    (source.withHead?.model ?? backbone).dispose();
    throw err;
  }) : null;
  try {
    dataset = await openDataset(options.data, {
      ...(cacheRecord ? { known: new Set(cacheRecord.files.map((f) => f.rel)) } : {}),
      val: options.val, test: options.test, seed: options.seed, size, resize: options.resize, maxPixels: options.maxPixels,
      onProgress: (done, total) => options.onProgress?.({ phase: 'decode', epoch: 0, epochs: 0, done, total }),
      shouldStop: () => Boolean(options.interrupt?.stop),
    });
  } catch (err) {
    (source.withHead?.model ?? backbone).dispose();
    throw err;
  }
  if (options.interrupt?.stop) {
    (source.withHead?.model ?? backbone).dispose();
    const signal = options.interrupt.stop === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
    throw new InterruptedError(signal, `Interrupted by ${signal} while decoding images; nothing was trained${options.resume ? '' : ' or written'}.`);
  }
  if (dataset.splits.train.length === 0) {
    (source.withHead?.model ?? backbone).dispose();
    throw new UsageError(`No training images left in ${options.data} after holding out val and test.`);
  }
  for (const note of dataset.layoutNotes) notice(note);
  const warnings = datasetWarnings(dataset, options);
  for (const w of warnings) notice(w);
  // Said by the scan already; kept in the report.
  for (const o of dataset.outside) warnings.push(`${o.link} links outside the dataset (to ${o.target}): its ${o.images} images are counted under its class`);
  const splitRecord = { root: dataset.root, seed: options.seed, val: options.val, test: options.test, layout: dataset.layout, files: dataset.splitMap };

  // `auto`: chosen from the data (freeze-auto.ts). A resumed run reads the chosen count from its config.
  let freezeAuto: FreezeAutoResult | null = null;
  if (options.freeze === 'auto') {
    try {
      freezeAuto = await chooseFreezeDepth(tf, backend, backbone, { preprocess: source.preprocess, inputSize: size, batchSize: options.batchSize, workers: options.workers, engine: options.engine, ...(options.store ? { store: options.store } : {}), out: options.out }, dataset, async (freeze, out) => {
        const { onProgress: _p, patience: _pa, resume: _r, headEpochs: _h, ...rest } = options;
        return await finetune(tf, backend, { ...rest, freeze, epochs: PROBE_EPOCHS, lr: options.lr === 'find' ? 'auto' : options.lr, calibrate: 'none', out, uniqueOut: false, trial: true });
      });
    } catch (err) {
      (source.withHead?.model ?? backbone).dispose();
      throw err;
    }
    const chosen = freezeAuto.depths.find((d) => d.freeze === freezeAuto!.chosen)!;
    notice(`--freeze auto: ${chosen.freeze} (after ${chosen.layer}; of ${freezeAuto.depths.length} block boundaries scored by LogME in ${freezeAuto.scoreSeconds.toFixed(1)} s, the best ${freezeAuto.depths.filter((d) => d.probe).length} fine-tuned for ${freezeAuto.probeEpochs} epochs each: validation accuracy ${chosen.probe!.valAccuracy.toFixed(3)}; ${freezeAuto.seconds.toFixed(0)} s in all)`);
  }
  // `default`: the registry's published recipe where there is one, else the head alone.
  const freeze = freezeAuto ? freezeAuto.chosen : options.freeze === 'default' ? (source.fineTuneFrom?.layers ?? 'all') : options.freeze;
  if (options.freeze === 'default' && !options.resume) notice(source.fineTuneFrom ? `--freeze ${source.fineTuneFrom.layers} (${source.name}'s default: ${source.fineTuneFrom.why}); --freeze all trains the head alone` : `--freeze all (the head alone): ${source.name} has no default fine-tuning point`);
  const frozenCount = resolveFreeze(backbone, freeze, options.model);
  const layerCount = backbone.layers.length;
  const epochs = options.epochs === 'auto' ? (frozenCount < layerCount ? 3 : 10) : options.epochs;
  if (options.epochs === 'auto' && options.augment !== 'none' && !options.resume && !options.trial) {
    const advice = `--augment ${options.augment} shows each image differently every epoch, and ${epochs} epochs (--epochs auto) are usually too few for it to pay off: give --epochs (3-4 times as many is a common start)`;
    warnings.push(advice);
    notice(advice);
  }
  const totalEpochs = headEpochs + epochs;
  if (headEpochs > 0 && frozenCount >= layerCount) {
    (source.withHead?.model ?? backbone).dispose();
    throw new UsageError(`--head-epochs ${headEpochs} needs --freeze below the whole backbone (${layerCount} layers): the second phase would train the head only too.`);
  }
  const full = classifier(tf, source, dataset.classes, options);
  if (options.bnMomentum !== undefined) setBatchNormMomentum(full, options.bnMomentum);
  const bn: BnMode = options.bn === 'auto' ? (options.weights === 'random' ? 'train' : 'frozen') : options.bn;
  if (options.bn === 'auto' && bn === 'train' && !options.resume && frozenCount < layerCount) notice('--bn train: the weights are random, so the BatchNormalization layers that train learn their statistics and scale/shift (recomputed over training images before each validation)');

  // With `find`, the auto rate stands in until the range test has run (or, on a resume, is read from its record).
  const lr = options.lr === 'auto' || options.lr === 'find' ? (frozenCount >= layerCount || headEpochs > 0 ? 1e-3 : 1e-4) : options.lr;
  const phases: PhaseInfo[] =
    headEpochs > 0
      ? [
          { name: 'head', first: 1, last: headEpochs, frozenLayers: layerCount, lr },
          { name: 'finetune', first: headEpochs + 1, last: totalEpochs, frozenLayers: frozenCount, lr: options.finetuneLr ?? lr / 10 },
        ]
      : [{ name: 'train', first: 1, last: totalEpochs, frozenLayers: frozenCount, lr }];
  const optimizer: OptimizerConfig = { optimizer: options.optimizer, momentum: options.momentum ?? (options.optimizer === 'sgd' ? 0.9 : 0), nesterov: options.nesterov };
  const loss: LossConfig = {
    labelSmoothing: options.labelSmoothing,
    classWeights: options.classWeight === 'balanced' ? balancedClassWeights(dataset.splits.train.map((i) => i.label), dataset.classes.length) : null,
  };
  const stepsPerEpoch = Math.ceil(dataset.splits.train.length / options.batchSize);
  const schedule: ScheduleConfig = {
    schedule: options.schedule,
    warmupSteps: Math.round(options.warmupEpochs * stepsPerEpoch),
    stepSteps: (options.stepEpochs ?? Math.max(1, Math.round(epochs / 3))) * stepsPerEpoch,
    gamma: options.gamma,
  };
  const config: Record<string, unknown> = { ...effectiveConfig(options), freeze: options.freeze === 'default' || options.freeze === 'auto' ? freeze : options.freeze, ...(freezeAuto ? { freezeAuto } : {}), epochs, lr: options.lr === 'find' ? 'find' : lr, phases, optimizer: optimizer.optimizer, momentum: optimizer.momentum, nesterov: optimizer.nesterov, inputSize: size, classWeights: loss.classWeights, backend: backend.label, frozenLayers: frozenCount, bn };

  const weights = new LayerOrderWeights(tf, full, Math.min(...phases.map((p) => p.frozenLayers)));
  const frozenDigest = weights.frozenDigest();
  const features = cacheRecord ? await checkedFeatures(options, cacheRecord, { model: source.name, frozenDigest, freeze: frozenCount, inputSize: size, preprocess: source.preprocess, headEpochs }, dataset).catch((err: unknown) => {
    full.dispose();
    throw err;
  }) : null;
  const run: Run = {
    tf, backend, options, source, dataset, full, backbone, phases, bn, optimizer, loss, schedule, stepsPerEpoch, totalEpochs,
    monitor: options.monitor, paths, weights, frozenDigest, checkpoint, startEpoch: 1,
    history: [], best: null, bestWeights: [], stale: 0, partial: null, stopReason: null, tensorsAfterEpoch: [],
    cacheStats: { enabled: false, hits: 0, misses: 0, spilled: 0 }, boundaryLayers: [], tails: [], kept: { probs: [], labels: [], paths: [] }, test: null, calibration: null,
    lrFind: null, lrFindResult: null, features, frozenPass: null,
  };
  if (options.lr === 'find') {
    run.lrFind = {
      spec: { minLr: options.minLr, maxLr: options.maxLr, steps: options.lrFindSteps },
      // The suggestion becomes the first phase's rate (a later phase's is a tenth of it, as with --lr), and the record.
      found: async (result) => {
        phases[0]!.lr = result.suggestion;
        if (phases[1]) phases[1].lr = options.finetuneLr ?? result.suggestion / 10;
        config.lr = result.suggestion;
        config.lrFind = { suggestion: result.suggestion, minLr: result.spec.minLr, maxLr: result.spec.maxLr, steps: result.lrs.length, stoppedEarly: result.stoppedEarly };
        const files = await writeLrFind(options.out, result);
        run.lrFindResult = { ...result, files };
        if (mode === 'train') await writeRunRecords(options.out, config, splitRecord);
        notice(`--lr find: ${result.suggestion.toExponential(2)} (steepest descent of the loss over a range test of ${result.lrs.length} steps${result.stoppedEarly ? `, ended when ${result.stoppedEarly}` : ''}; curve in ${files.svg})`);
      },
    };
  }
  try {
    if (checkpoint) {
      const saved = JSON.parse(await readFile(join(options.out, 'split.json'), 'utf8').catch(() => 'null')) as { files?: unknown } | null;
      if (saved && JSON.stringify(saved.files) !== JSON.stringify(dataset.splitMap)) {
        throw new UsageError(`The images in ${options.data} differ from those the run in ${options.out} started with, so it cannot be resumed exactly.`, { suggestion: 'Restore the dataset, or start a new run.' });
      }
      if (checkpoint.state.frozenDigest !== undefined && checkpoint.state.frozenDigest !== frozenDigest) {
        throw new TlError('E_CHECKPOINT', `The frozen layers of ${options.model} differ from those the run in ${options.out} started with (their weights changed), so it cannot be resumed.`, { suggestion: 'Resume with the weights the run started from, or start a new run.' });
      }
      weights.load(checkpoint.groups.weights ?? [], paths.last);
      ({ history: run.history, best: run.best, stale: run.stale, partial: run.partial } = checkpoint.state);
      run.startEpoch = checkpoint.state.epochsDone + 1;
      if (run.startEpoch > totalEpochs) {
        // Trained to the end but stopped before its model and report were written: finish it (best weights, calibration,
        // test metrics, model, report). A finished run trains on only with more epochs.
        if (existsSync(join(options.out, 'report.json'))) throw new UsageError(`The run in ${options.out} has already trained all ${totalEpochs} epochs.`, { suggestion: `Pass --epochs with a larger number to train on.` });
        notice(`${options.out} trained all ${totalEpochs} epochs but stopped before writing its model and report: finishing it`);
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
    const resumedFrom = checkpoint ? { epoch: run.startEpoch, batches: run.partial?.batches ?? 0 } : null;
    writing();
    await writeRunRecords(options.out, config, splitRecord);

    for (const [phaseIndex, phase] of phases.entries()) {
      if (run.stopReason !== null) break;
      // The last phase always runs: with no epoch left it only finishes (best weights, calibration, test split).
      if (phase.last < run.startEpoch && phaseIndex < phases.length - 1) continue;
      await runPhase(run, phaseIndex, phase, mode);
      run.partial = null;
      if (mode === 'lr-find') return run.lrFindResult!;
    }
    const testProbs = concatFloat32(run.kept.probs);
    const broken = nonFiniteRows(testProbs, dataset.classes.length);
    if (broken > 0) {
      // The kept weights give NaN (weights that never fit, or a divergence before any good epoch): say so, no metrics.
      warnings.push(`the model's outputs are not finite for ${broken} of ${run.kept.labels.length} test images, so there are no test metrics`);
      notice(warnings.at(-1)!);
      run.test = null;
    }
    const metrics = run.test ? computeMetrics(testProbs, run.kept.labels, dataset.classes, { paths: run.kept.paths }) : null;
    // One test loss: the metrics' log-loss (the tail's own cross-entropy clips differently).
    if (run.test && metrics) run.test.loss = metrics.logLoss;
    let calibration: Calibration | null = null;
    if (run.calibration) {
      const { temperature } = run.calibration;
      let test: CalibrationEffect | null = null;
      if (metrics && run.calibration.applied) {
        const before = computeMetrics(temper(testProbs, dataset.classes.length, 1 / temperature), run.kept.labels, dataset.classes);
        test = { logLossBefore: before.logLoss, logLossAfter: metrics.logLoss, eceBefore: before.ece, eceAfter: metrics.ece };
      }
      calibration = { ...run.calibration, test };
    }
    const last = run.history.at(-1);
    if (!options.trial && run.stopReason === null && run.best !== null && last && run.best.epoch === last.epoch && run.history.length > 1) {
      // --epochs counts the last phase's epochs (a head phase comes on top): the hint trains about half as many again.
      const more = Math.max(1, Math.round(totalEpochs / 2));
      const hint = `${run.best.monitor} was still improving at the last epoch (${last.epoch}): more epochs may help (\`tl finetune --resume ${options.out} --epochs ${epochs + more}\` trains ${more} more)`;
      warnings.push(hint);
      notice(hint);
    }
    const name = source.name.split(' ')[0]!;
    const onnx = await writeTrainedModel(tf, options.out, full, { name, classes: dataset.classes, preprocess: source.preprocess, inputSize: size, temperature: calibration?.applied ? calibration.temperature : null });
    const { cacheStats } = run;
    const lookups = cacheStats.hits + cacheStats.misses;
    const result: FinetuneResult = {
      outDir: options.out,
      classes: dataset.classes,
      history: run.history,
      phases,
      test: run.test ? { ...run.test, count: dataset.splits.test.length } : null,
      frozenLayers: frozenCount,
      totalLayers: layerCount,
      trainableParams: countTrainable(full, backbone, frozenCount, bn),
      boundaryLayers: run.boundaryLayers,
      cache: { enabled: cacheStats.enabled, hitRate: lookups === 0 ? 0 : cacheStats.hits / lookups, spilled: cacheStats.spilled },
      frozenPass: run.frozenPass,
      best: run.best,
      stopReason: run.stopReason,
      resumedFrom,
      calibration,
      onnx,
      metrics,
      tensorsAfterEpoch: run.tensorsAfterEpoch,
      wasmHeapBytes: wasmHeapBytes(),
      skipped: dataset.skipped,
      warnings,
    };
    const { outDir: _outDir, ...rest } = result;
    await writeReports(options.out, { schemaVersion: REPORT_SCHEMA_VERSION, kind: 'finetune', tlVersion: TL_VERSION, createdAt: new Date().toISOString(), backend: backend.label, model: source.name, data: options.data, config, seconds: (performance.now() - runStarted) / 1000, ...rest });
    return result;
  } finally {
    tf.dispose(run.bestWeights);
    // tfjs counts a layer's references per application: tail layers were applied twice (full and tail), frozen
    // layers once, so each tail is disposed and the frozen containers (which own nothing of their own) are not.
    for (const tail of run.tails) tail.dispose();
    full.dispose();
  }
}

/**
 * `--features DIR`: the cache's record verified (its files' hashes) and compared with this run, field by field; every
 * image of the run must be in it, unchanged since. Returns the arrays by relative path.
 */
async function checkedFeatures(options: RunOptions, record: CacheRecord, run: { model: string; frozenDigest: string; freeze: number; inputSize: number; preprocess: string; headEpochs: number }, dataset: Dataset): Promise<{ arrays: Map<string, Float32Array[]>; layers: string[] }> {
  const dir = options.features!;
  if (options.augment !== 'none') throw new UsageError(`--features ${dir}: the cache holds one output per image; --augment ${options.augment} changes the images every epoch.`);
  if (run.headEpochs > 0) throw new UsageError(`--features ${dir}: a head phase cuts the whole backbone, not the cache's cut; leave out --head-epochs.`);
  const k = record.key;
  const differ = (what: string, cache: unknown, here: unknown) => new UsageError(`--features ${dir} was computed with ${what} ${String(cache)}; this run uses ${String(here)}.`, { suggestion: 'Make the cache again with this run\'s settings (tl cache), or train with them.' });
  if (k.model !== run.model) throw differ('model', k.model, run.model);
  if (k.freeze !== run.freeze) throw differ('--freeze', k.freeze, run.freeze);
  if (k.frozenDigest !== run.frozenDigest) throw differ('frozen weights of sha256', k.frozenDigest.slice(0, 12), run.frozenDigest.slice(0, 12));
  if (k.inputSize !== run.inputSize) throw differ('--input-size', k.inputSize, run.inputSize);
  if (k.preprocess !== run.preprocess) throw differ('--preprocess', k.preprocess, run.preprocess);
  if (k.resize !== options.resize) throw differ('--resize', k.resize, options.resize);
  const byRel = new Map(record.files.map((f) => [f.rel, f]));
  const { stat } = await import('node:fs/promises');
  for (const item of [...dataset.splits.train, ...dataset.splits.val, ...dataset.splits.test]) {
    const f = byRel.get(item.rel);
    if (!f) throw new UsageError(`--features ${dir} has no outputs for ${item.path}: it was made from other images.`);
    const s = await stat(item.path);
    if (s.size !== f.size || Math.round(s.mtimeMs) !== f.mtimeMs) throw new UsageError(`--features ${dir}: ${item.path} changed after the cache was made.`);
  }
  return { arrays: await loadCacheArrays(dir, record), layers: k.boundaryLayers };
}

/**
 * The model that trains: a run's own classifier when `--model` is a run whose classes are the dataset's (continuing
 * means continuing with its head), else the backbone with a new head (initialised from the seed).
 */
function classifier(tf: Tf, source: Backbone, classes: string[], options: RunOptions): LayersModel {
  const previous = source.withHead;
  if (previous && previous.classes.length === classes.length && previous.classes.every((c, i) => c === classes[i])) {
    if (!options.resume) notice(`continuing with the classifier head of ${source.name} (its classes are the dataset's); --new-head trains a fresh one`);
    return previous.model;
  }
  if (previous) {
    if (!options.resume) notice(`a new classifier head replaces ${source.name}'s: its classes (${previous.classes.join(', ')}) are not the dataset's (${classes.join(', ')})`);
    const kept = new Set(source.model.layers.map((l) => l.name));
    for (const layer of previous.model.layers) if (!kept.has(layer.name)) layer.dispose();
  }
  const layerCount = source.model.layers.length;
  const full = attachHead(tf, source.model, { classes: classes.length, ...(options.headHidden ? { hidden: options.headHidden } : {}), dropout: options.dropout, name: `${source.name.split(' ')[0]!.replace(/\W/g, '_')}_finetuned` });
  initializeWeights(tf, full, mixSeed(options.seed, 17), new Set(full.layers.slice(layerCount).map((l) => l.name)));
  return full;
}

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
  return { optimizer: run.optimizer, loss: run.loss, weightDecay: run.options.weightDecay, boundaryShapes: cut.boundaryShapes, batchSize: run.options.batchSize };
}

/**
 * The frozen part's outputs for every training and validation image, computed before the phase trains (as a PyTorch
 * loop that caches its frozen prefix does); its session is then closed, so that it and the trainer's never hold
 * their memory at the same time.
 */
async function fillCache(run: Run, frozen: FrozenPart, phase: PhaseInfo): Promise<void> {
  const { options, dataset } = run;
  const items = [...dataset.splits.train, ...dataset.splits.val];
  const started = performance.now();
  const images = await frozen.fill(items, options.batchSize, {
    onProgress: (done, total) => options.onProgress?.({ phase: 'features', stage: phase.name, epoch: Math.max(phase.first, run.startEpoch), epochs: run.totalEpochs, done, total }),
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

/** One phase: cut the model at its freeze setting, open what computes the boundary and the steps, train its epochs. */
async function runPhase(run: Run, phaseIndex: number, phase: PhaseInfo, mode: 'train' | 'lr-find'): Promise<void> {
  const { tf, options, dataset, full, backbone } = run;
  const frozenNames = new Set(backbone.layers.slice(0, phase.frozenLayers).map((l) => l.name));
  applyTrainability(full, frozenNames, run.bn);
  const cut = cutModel(tf, full, frozenNames);
  if (cut.tail !== full) run.tails.push(cut.tail);
  run.boundaryLayers = cut.frozen ? cut.boundaryLayers : [];
  const useCache = cut.frozen !== null && options.augment === 'none';
  run.cacheStats.enabled ||= useCache;
  const cache = useCache ? new FeatureCache(cut.boundaryShapes, options.featureCacheMb * 2 ** 20, options.out) : null;
  if (run.features && cache) {
    // The cut must be the one the cache was computed at; then every image's boundary comes from it.
    if (JSON.stringify(cut.boundaryLayers) !== JSON.stringify(run.features.layers)) throw new UsageError(`--features ${options.features}: the cache holds the outputs of ${run.features.layers.join(', ')}; this run's cut is at ${cut.boundaryLayers.join(', ')}.`);
    for (const item of [...dataset.splits.train, ...dataset.splits.val, ...dataset.splits.test]) cache.set(item.path, run.features.arrays.get(item.rel)!);
  }
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
    const openSession = frozenCut && options.engine === 'onnx' && !run.features ? () => onnxSessionFor(frozenCut, { ...(options.store ? { store: options.store } : {}), spinning: false }) : null;
    frozen = new FrozenPart(tf, cut, run.source.preprocess, dataset, cache, pool, openSession);
    if (cache !== null && phase.last >= run.startEpoch) await fillCache(run, frozen, phase);
    const openTrainer = async (): Promise<Trainer> => (compiled ? await OnnxTrainer.open(tf, cut.tail, trainerConfig(run, cut), compiled) : new TfjsTrainer(tf, cut.tail, { optimizer: run.optimizer, lr: phase.lr, loss: run.loss, weightDecay: options.weightDecay, accumulate: options.accumulate, classes: dataset.classes.length, boundaryShapes: cut.boundaryShapes, pool }));
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
    if (run.stopReason !== null || phaseIndex === run.phases.length - 1) {
      // Like Keras's restore_best_weights: the saved model is the best epoch's (the current weights when nothing
      // was validated or training was interrupted before validation; the initial ones after a divergence in
      // epoch 1). The test split then goes through this phase's cut: its frozen part on the replicas or ONNX Runtime.
      const interrupted = run.stopReason?.startsWith('interrupted') === true;
      if (run.best !== null || (run.stopReason !== null && !interrupted)) run.weights.restore(run.bestWeights);
      if (options.calibrate === 'temperature' && !interrupted && dataset.splits.val.length > 0) run.calibration = await calibrate(run, frozen);
      // An interrupted run stops promptly: its test split is evaluated when it is resumed and finishes.
      if (dataset.splits.test.length > 0 && !interrupted) run.test = await frozen.evaluate(dataset.splits.test, options.batchSize, undefined, run.kept);
    }
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

/**
 * Temperature scaling on the validation split, folded into the classifier: softmax(z / T) is softmax of the last
 * Dense layer with its kernel and bias divided by T, so every consumer of the saved model (tfjs, model.onnx, tl
 * predict and eval) gets calibrated probabilities with nothing to apply. Predictions (the argmax) do not change.
 */
async function calibrate(run: Run, frozen: FrozenPart): Promise<Omit<Calibration, 'test'> | null> {
  const { tf, dataset, options } = run;
  const kept: KeptOutputs = { probs: [], labels: [], paths: [] };
  await frozen.evaluate(dataset.splits.val, options.batchSize, undefined, kept);
  const probs = concatFloat32(kept.probs);
  const k = dataset.classes.length;
  if (nonFiniteRows(probs, k) > 0) {
    notice('not calibrated: the model gives NaN or infinite probabilities on the validation split');
    return null;
  }
  const fit = fitTemperature(probs, kept.labels, k);
  const classifier = run.full.layers.at(-1)!;
  if (classifier.getClassName() !== 'Dense' || (classifier.getConfig() as { activation?: string }).activation !== 'softmax') {
    notice(`not calibrated: the model's last layer '${classifier.name}' is not a softmax Dense layer`);
    return null;
  }
  const before = computeMetrics(probs, kept.labels, dataset.classes);
  const after = computeMetrics(temper(probs, k, fit.temperature), kept.labels, dataset.classes);
  const val = { logLossBefore: before.logLoss, logLossAfter: after.logLoss, eceBefore: before.ece, eceAfter: after.ece };
  const errors = kept.labels.filter((label, i) => argmax(probs, i * k, k) !== label).length;
  const decision = temperatureDecision({ fitted: fit.temperature, images: kept.labels.length, errors, ...val });
  if (!decision.applied) {
    notice(`not calibrated: ${decision.reason}`);
    return { temperature: 1, fitted: fit.temperature, ...decision, val };
  }
  tf.tidy(() => classifier.weights.forEach((w) => w.write(tf.div(w.read(), fit.temperature))));
  return { temperature: fit.temperature, fitted: fit.temperature, ...decision, val };
}

/** Writes checkpoints/last.ckpt: every weight, the trainer's optimizer state and where the run stands. */
async function saveLast(run: Run, phaseIndex: number, trainer: Trainer, epochsDone: number, inEpoch: RunState['partial']): Promise<void> {
  const state: RunState = { version: 1, epochsDone, partial: inEpoch, phase: phaseIndex, history: run.history, best: run.best, stale: run.stale, frozenDigest: run.frozenDigest };
  trainer.syncWeights();
  const optimizer = await trainer.optimizerState();
  await writeCheckpoint(run.paths.last, state, { weights: await run.weights.arrays(), optimizer });
}

/** The range test on the first phase's trainer and batches (shuffled anew each pass); the weights are restored. */
async function findLearningRate(run: Run, spec: LrFindSpec, trainer: Trainer, frozen: FrozenPart): Promise<LrFindResult> {
  const { tf, options, dataset } = run;
  const snapshot = run.weights.snapshot();
  let pass = 0;
  const open = () => dataset.source.batches(dataset.splits.train, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, 9_000 + pass), augment: options.augment, augmentSeed: mixSeed(options.seed, 9_000 + pass, 7), needPixels: frozen.needsPixels })[Symbol.asyncIterator]();
  let batches = open();
  try {
    return await rangeTest(spec, async (lr, index) => {
      let next = await batches.next();
      if (next.done) {
        pass++;
        batches = open();
        next = await batches.next();
      }
      const batch = next.value as Batch;
      const step = await trainer.step({ boundary: await frozen.boundary(batch), labels: batch.labels, lr, dropoutSeed: mixSeed(options.seed, 9_000, index, 3) });
      options.onProgress?.({ phase: 'lr-find', epoch: 0, epochs: 0, done: index + 1, total: spec.steps, loss: step.loss });
      return step.loss;
    });
  } finally {
    await batches.return?.(undefined);
    run.weights.restore(snapshot);
    tf.dispose(snapshot);
  }
}

/** One epoch: its training steps (from where an interrupted run stopped), validation, the best weights, checkpoints. */
async function runEpoch(run: Run, phaseIndex: number, phase: PhaseInfo, epoch: number, trainer: Trainer, frozen: FrozenPart, cut: Cut): Promise<void> {
  const { tf, options, dataset } = run;
  const resumed = epoch === run.startEpoch ? run.partial : null;
  const started = performance.now() - (resumed?.seconds ?? 0) * 1000;
  let seen = resumed?.seen ?? 0;
  let lossSum = resumed?.lossSum ?? 0;
  let correct = resumed?.correct ?? 0;
  let batchIndex = resumed?.batches ?? 0;
  let lr = phase.lr;
  const total = dataset.splits.train.length;
  const phaseSteps = (phase.last - phase.first + 1) * run.stepsPerEpoch;
  const batches = dataset.source.batches(dataset.splits.train, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, epoch), augment: options.augment, augmentSeed: mixSeed(options.seed, epoch, 7), skip: batchIndex, needPixels: frozen.needsPixels });
  // Batches of one size go to the trainer in chunks where it takes them (the onnx engine runs a chunk in one run).
  const chunk = trainer.steps && trainer.chunkFor ? trainer.chunkFor(options.batchSize) : 1;
  let pending: Batch[] = [];
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
      inputs.push({ boundary: await frozen.boundary(batch, stacked && { ...stacked, at: i * n }), labels: batch.labels, lr: lrOf, dropoutSeed: mixSeed(options.seed, epoch, batchIndex + i, 3) });
    }
    const results = group.length > 1 ? await trainer.steps!(inputs) : [await trainer.step(inputs[0]!)].map((r) => ({ ...r, finite: trainer.weightsFinite() }));
    for (const [i, batch] of group.entries()) {
      const step = results[i]!;
      lr = inputs[i]!.lr;
      // Clipped probabilities can hide a divergence from the loss (a clamp turns NaN into a bound), so weights are checked too.
      const diverged = !Number.isFinite(step.loss) ? `the loss became ${step.loss}` : step.finite ? null : 'the weights became NaN or infinite';
      if (diverged !== null) {
        run.stopReason = `${diverged} in epoch ${epoch} after ${seen + batch.items.length} images; training stopped and the ${run.best ? `best epoch's (${run.best.epoch})` : 'initial'} weights were kept`;
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
      await saveLast(run, phaseIndex, trainer, epoch - 1, { batches: batchIndex, seen, lossSum, correct, seconds: (performance.now() - started) / 1000 });
      return false;
    }
    return true;
  };
  for await (const batch of batches) {
    if (pending.length > 0 && pending[0]!.labels.length !== batch.labels.length && !(await flush())) return;
    pending.push(batch);
    if (pending.length >= chunk && !(await flush())) return;
  }
  if (!(await flush())) return;
  // Validation, the best weights and the checkpoint read the tfjs variables.
  trainer.syncWeights();
  const trainSeconds = (performance.now() - started) / 1000;
  if (run.bn === 'train' && (await recomputeBatchNorm(tf, cut, frozen, dataset, preciseBnSample(dataset.splits.train, options.seed), options.batchSize)) > 0) trainer.reloadStates();
  const val = dataset.splits.val.length > 0 ? await frozen.evaluate(dataset.splits.val, options.batchSize, (done, n) => options.onProgress?.({ phase: 'validate', stage: phase.name, epoch, epochs: run.totalEpochs, done, total: n })) : null;
  await frozen.releaseIfCached([...dataset.splits.train, ...dataset.splits.val]);
  // Weights can grow past what the validation pass can carry while the training loss (clipped) still reads finite.
  if (val !== null && !Number.isFinite(val.loss)) {
    run.stopReason = `the validation loss became ${val.loss} in epoch ${epoch} after ${seen} images; training stopped and the ${run.best ? `best epoch's (${run.best.epoch})` : 'initial'} weights were kept`;
    return;
  }
  run.history.push({ epoch, loss: lossSum / seen, accuracy: correct / seen, val_loss: val?.loss ?? null, val_accuracy: val?.accuracy ?? null, lr, seconds: (performance.now() - started) / 1000, img_per_s: seen / trainSeconds });
  options.onProgress?.({ phase: 'epoch', stage: phase.name, epoch, epochs: run.totalEpochs, done: total, total, row: run.history.at(-1)! });
  await writeMetricsCsv(options.out, run.history);
  const monitor = run.monitor;
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
  // A later phase starts from the best weights so far, as a second Keras fit after restore_best_weights would.
  if (epoch >= phase.last && phaseIndex < run.phases.length - 1 && run.best !== null) run.weights.restore(run.bestWeights);
  await saveLast(run, phaseIndex, trainer, epoch, null);
  run.tensorsAfterEpoch.push(tf.memory().numTensors);
}

/** Ratio of the largest to the smallest class in the training split above which --class-weight is suggested. */
const IMBALANCE = 10;

/** Classes that a split misses (so its metrics do not cover them) and heavy imbalance, in words. */
function datasetWarnings(dataset: Dataset, options: RunOptions): string[] {
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
  // Identical files within a class: each one a split apart leaks a training image into validation or test.
  const splitOf = new Map(SPLITS.flatMap((s) => dataset.splits[s].map((i) => [i.rel, s] as const)));
  const straddle = dataset.duplicates.filter((group) => new Set(group.map((rel) => splitOf.get(rel))).size > 1);
  if (straddle.length > 0) out.push(`${straddle.length} group(s) of identical files fall into different splits, so the validation or test metrics include images the model trained on (e.g. ${straddle[0]!.join(' = ')}; tl data lists them)`);
  return out;
}

/** Trainable parameters of the last phase's setting. */
function countTrainable(full: LayersModel, backbone: LayersModel, frozenCount: number, bn: BnMode): number {
  applyTrainability(full, new Set(backbone.layers.slice(0, frozenCount).map((l) => l.name)), bn);
  return full.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/** The options as saved with a run (everything but callbacks). */
function effectiveConfig(options: RunOptions): Omit<RunOptions, 'onProgress' | 'onDownload' | 'interrupt' | 'resume' | 'store' | 'uniqueOut' | 'trial'> {
  const { onProgress: _onProgress, onDownload: _onDownload, interrupt: _interrupt, resume: _resume, store: _store, uniqueOut: _uniqueOut, trial: _trial, ...config } = options;
  return config;
}

