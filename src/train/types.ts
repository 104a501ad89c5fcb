// What a fine-tune takes and returns, and what a run carries from one step of its sequence to the next.
import type { EngineName } from '../engine/names.js';
import { availableParallelism } from 'node:os';
import type { BackendInfo, LayersModel, Tensor, Tf } from '../backend/index.js';
import type { BnMode } from '../model/index.js';
import { runFile, type Dataset } from '../data/index.js';
import type { KeptOutputs } from '../frozen/part.js';
import type { Metrics } from '../metrics/classification.js';
import type { MultiLabelMetrics } from '../metrics/multilabel.js';
import type { LossConfig } from '../model/loss.js';
import type { Calibration, FinetuneReport, ReportSuspect } from '../report/schema.js';
import type { NamedArray } from '../step/index.js';
import type { OptimizerConfig, ScheduleConfig } from '../step/optim.js';
import { parseOptions } from '../util/options.js';
import type { Backbone } from '../weights/backbone.js';
import type { DownloadProgress } from '../weights/download.js';
import { settingsSchema, type Settings, type SettingsInput } from '../options/finetune.js';
import type { LrFindResult, LrFindSpec } from './lr-find.js';
import type { EpochRow } from './run-output.js';
import type { LayerOrderWeights } from './weights.js';

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
export type RunOptions = Omit<Settings, 'workers'> & { workers: number } & RunControl;

/**
 * Parses the settings with their one schema (defaults and limits; a bad value is a usage error naming its flag) and
 * resolves `--workers auto`: one per core on wasm and cpu, 1 on tensorflow (which threads itself).
 */
export function resolveOptions(options: FinetuneOptions, backend: BackendInfo): RunOptions {
  const { data, out, resume, uniqueOut, trial, store, onProgress, onDownload, interrupt } = options;
  const control: RunControl = { data, out, ...(resume !== undefined ? { resume } : {}), ...(uniqueOut !== undefined ? { uniqueOut } : {}), ...(trial !== undefined ? { trial } : {}), ...(store !== undefined ? { store } : {}), ...(onProgress ? { onProgress } : {}), ...(onDownload ? { onDownload } : {}), ...(interrupt ? { interrupt } : {}) };
  const settings = parseOptions(settingsSchema, options);
  const workers = settings.workers === 'auto' ? (backend.name === 'tensorflow' ? 1 : availableParallelism()) : settings.workers;
  return { ...settings, workers, ...control };
}

/** The options as saved with a run (everything but callbacks). */
export function effectiveConfig(options: RunOptions): Omit<RunOptions, 'onProgress' | 'onDownload' | 'interrupt' | 'resume' | 'store' | 'uniqueOut' | 'trial'> {
  const { onProgress: _onProgress, onDownload: _onDownload, interrupt: _interrupt, resume: _resume, store: _store, uniqueOut: _uniqueOut, trial: _trial, ...config } = options;
  return config;
}

export interface ProgressEvent {
  /** `frozen`: the frozen part's outputs computed once, before a phase trains on them. */
  phase: 'decode' | 'frozen' | 'train' | 'validate' | 'epoch' | 'lr-find';
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
  engine?: EngineName;
}

export interface FinetuneResult {
  outDir: string;
  classes: string[];
  history: EpochRow[];
  phases: PhaseInfo[];
  test: { loss: number; accuracy: number; count: number } | null;
  /** Full metrics on the test split (single-label). */
  metrics: Metrics | null;
  /** Several labels per image: the metrics on the test split at `thresholds`. */
  multiLabel: MultiLabelMetrics | null;
  /** Several labels per image: each label's threshold, tuned on the validation split. */
  thresholds: number[] | null;
  /** Test images whose label is probably wrong (confident learning on the test probabilities), worst first. */
  suspects: ReportSuspect[] | null;
  /** Possible near-duplicates of a training image among the validation and test images (null: not checked). */
  nearDuplicates: FinetuneReport['nearDuplicates'];
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

export type LrFindRun = LrFindResult & { files: { json: string; svg: string } };

/** What a checkpoint remembers besides tensors. */
export interface RunState {
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
  return { last: runFile(out, 'lastCheckpoint'), best: runFile(out, 'bestCheckpoint') };
}

/** What stays fixed for the whole run, and what the phases carry from one to the next. */
export interface Run {
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
  /** Several labels per image: each label's threshold, tuned on the validation split (null: single-label, or not yet). */
  thresholds: number[] | null;
  /** `--lr-decay-per-block`: each trainable weight's multiple of the rate, by name (null: one rate for all). */
  lrScales: Record<string, number> | null;
  /** The range test still to run on the first phase (`--lr find`), and what to do with its result. */
  lrFind: { spec: LrFindSpec; found: (result: LrFindResult) => Promise<void> } | null;
  lrFindResult: LrFindRun | null;
  /** `--cache`: each image's boundary arrays (by path relative to the root) and the cut they were computed at. */
  cached: { arrays: Map<string, Float32Array[]>; layers: string[] } | null;
  /** The frozen part's pass over the images before training (summed over phases). */
  frozenPass: FinetuneResult['frozenPass'];
}
