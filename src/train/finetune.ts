// Fine-tuning: the frozen part runs once per image in inference mode (cached), the tail trains on its outputs.
import { join } from 'node:path';
import { wasmHeapBytes, type BackendInfo, type NamedTensorMap, type Tensor, type Tf } from '../backend/index.js';
import { openDataset, preprocess, type AugmentLevel, type Batch, type Dataset, type ImageItem, type ResizeMode } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { PreprocessMode } from '../registry/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { mixSeed } from '../util/random.js';
import { initializeWeights } from '../registry/init.js';
import { loadBackbone } from '../weights/backbone.js';
import type { DownloadProgress } from '../weights/download.js';
import { saveLayersModel } from '../weights/save.js';
import { FeatureCache } from './features.js';
import { ReplicaPool, type Shard, type ShardResult } from './parallel.js';
import { crossEntropy, shardGradients } from './step.js';
import { applyTrainability, attachHead, cutModel, resolveFreeze, type BnMode, type Cut, type FreezeSpec } from './freeze.js';

export interface FinetuneOptions {
  data: string;
  model: string;
  out: string;
  freeze: FreezeSpec;
  epochs: number;
  batchSize: number;
  /** Adam learning rate; `auto` is 1e-3 when only the head trains and 1e-4 when backbone layers train too. */
  lr: number | 'auto';
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
  /** Stop after this many epochs without improvement of `monitor`; undefined trains every epoch. */
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

export interface FinetuneResult {
  outDir: string;
  classes: string[];
  history: EpochRow[];
  test: { loss: number; accuracy: number; count: number } | null;
  frozenLayers: number;
  totalLayers: number;
  trainableParams: number;
  boundaryLayers: string[];
  cache: { enabled: boolean; hitRate: number; spilled: number };
  /** The epoch whose weights were saved (the best by `monitor`), and its value. */
  best: { epoch: number; monitor: string; value: number } | null;
  /** Why training ended before the last epoch, if it did. */
  stopReason: string | null;
  /** Peak wasm heap in bytes (wasm backend only; its limit is 4 GiB). */
  wasmHeapBytes: number | null;
  /** tf.memory().numTensors after each epoch (flat when nothing leaks). */
  tensorsAfterEpoch: number[];
  skipped: { path: string; reason: string }[];
}

/** Fine-tunes a registry model on a folder dataset and writes the run folder. */
export async function finetune(tf: Tf, backend: BackendInfo, options: FinetuneOptions): Promise<FinetuneResult> {
  if (options.batchSize % options.accumulate !== 0) {
    throw new UsageError(`--batch-size ${options.batchSize} must be a multiple of --accumulate ${options.accumulate}.`);
  }
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  const backbone = source.model;
  const size = options.inputSize ?? source.inputSize;
  let dataset: Dataset;
  try {
    dataset = await openDataset(options.data, {
      val: options.val, test: options.test, seed: options.seed, size, resize: options.resize, maxPixels: options.maxPixels,
      onProgress: (done, total) => options.onProgress?.({ phase: 'decode', epoch: 0, epochs: options.epochs, done, total }),
    });
  } catch (err) {
    backbone.dispose();
    throw err;
  }
  if (dataset.splits.train.length === 0) throw new UsageError(`No training images left in ${options.data} after holding out val and test.`);

  const frozenCount = resolveFreeze(backbone, options.freeze, options.model);
  const frozenNames = new Set(backbone.layers.slice(0, frozenCount).map((l) => l.name));
  const full = attachHead(tf, backbone, { classes: dataset.classes.length, ...(options.headHidden ? { hidden: options.headHidden } : {}), dropout: options.dropout, name: `${source.name.split(' ')[0]!.replace(/\W/g, '_')}_finetuned` });
  initializeWeights(tf, full, mixSeed(options.seed, 17), new Set(full.layers.slice(backbone.layers.length).map((l) => l.name)));
  applyTrainability(full, frozenNames, options.bn);
  const cut = cutModel(tf, full, frozenNames);
  const useCache = cut.frozen !== null && options.augment === 'none';
  const cache = useCache ? new FeatureCache(cut.boundaryShapes, options.featureCacheBytes, options.out) : null;
  const lr = options.lr === 'auto' ? (frozenCount >= backbone.layers.length ? 1e-3 : 1e-4) : options.lr;
  const optimizer = tf.train.adam(lr);
  const pool = options.workers > 1 ? await ReplicaPool.start(cut.tail, { count: options.workers - 1, backend: backend.name, bn: options.bn, classes: dataset.classes.length }) : null;
  const engine = new Engine(tf, cut, source.preprocess, dataset, cache, pool);
  const history: EpochRow[] = [];
  const tensorsAfterEpoch: number[] = [];

  const monitor = options.monitor ?? 'val_loss';
  const better = (a: number, b: number) => (monitor === 'val_loss' ? a < b : a > b);
  // Weights of the best epoch so far (the start, until an epoch is validated); restored before saving.
  const snapshot = () => tf.tidy(() => full.weights.map((w) => tf.keep(w.read().clone())));
  let bestWeights = snapshot();
  let best: FinetuneResult['best'] = null;
  let stopReason: string | null = null;
  let stale = 0;

  try {
    for (let epoch = 1; epoch <= options.epochs && stopReason === null; epoch++) {
      const started = performance.now();
      let seen = 0;
      let lossSum = 0;
      let correct = 0;
      const total = dataset.splits.train.length;
      const batches = dataset.source.batches(dataset.splits.train, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, epoch), augment: options.augment, augmentSeed: mixSeed(options.seed, epoch, 7) });
      for await (const batch of batches) {
        const step = await engine.trainStep(batch, optimizer, options.accumulate);
        // Clipped probabilities can hide a divergence from the loss (a clamp turns NaN into a bound), so weights are checked too.
        const diverged = !Number.isFinite(step.loss) ? `the loss became ${step.loss}` : engine.weightsFinite() ? null : 'the weights became NaN or infinite';
        if (diverged !== null) {
          stopReason = `${diverged} in epoch ${epoch} after ${seen + batch.items.length} images; training stopped and the ${best ? `best epoch's (${best.epoch})` : 'initial'} weights were kept`;
          break;
        }
        seen += batch.items.length;
        if (options.interrupt?.stop) {
          stopReason = `interrupted by ${options.interrupt.stop} in epoch ${epoch} after ${seen} of ${dataset.splits.train.length} images`;
          break;
        }
        lossSum += step.loss * batch.items.length;
        correct += step.correct;
        const elapsed = (performance.now() - started) / 1000;
        options.onProgress?.({ phase: 'train', epoch, epochs: options.epochs, done: seen, total, loss: lossSum / seen, accuracy: correct / seen, imagesPerSecond: seen / elapsed, etaSeconds: (elapsed / seen) * (total - seen) });
      }
      if (stopReason !== null) break;
      const trainSeconds = (performance.now() - started) / 1000;
      const val = dataset.splits.val.length > 0 ? await engine.evaluate(dataset.splits.val, options.batchSize, (done, n) => options.onProgress?.({ phase: 'validate', epoch, epochs: options.epochs, done, total: n })) : null;
      history.push({
        epoch,
        loss: lossSum / seen,
        accuracy: correct / seen,
        val_loss: val?.loss ?? null,
        val_accuracy: val?.accuracy ?? null,
        lr,
        seconds: (performance.now() - started) / 1000,
        img_per_s: seen / trainSeconds,
      });
      options.onProgress?.({ phase: 'epoch', epoch, epochs: options.epochs, done: total, total, row: history.at(-1)! });
      await writeMetricsCsv(join(options.out, 'metrics.csv'), history);
      const value = val === null ? null : monitor === 'val_loss' ? val.loss : val.accuracy;
      if (value !== null && (best === null || better(value, best.value))) {
        best = { epoch, monitor, value };
        tf.dispose(bestWeights);
        bestWeights = snapshot();
        stale = 0;
      } else if (value !== null && options.patience !== undefined && ++stale >= options.patience) {
        stopReason = `early stopping: ${monitor} did not improve for ${options.patience} epoch${options.patience === 1 ? '' : 's'} after epoch ${best!.epoch}`;
      }
      tensorsAfterEpoch.push(tf.memory().numTensors);
    }
    // Like Keras's restore_best_weights: the saved model is the best epoch's (the current weights when nothing was
    // validated or training was interrupted before validation; the initial ones after a divergence in epoch 1).
    const interrupted = stopReason?.startsWith('interrupted') === true;
    if (best !== null || (stopReason !== null && !interrupted)) full.setWeights(bestWeights);
    const test = dataset.splits.test.length > 0 ? await engine.evaluate(dataset.splits.test, options.batchSize) : null;

    await saveLayersModel(tf, full, join(options.out, 'model'), { tl: { model: source.name.split(' ')[0], classes: dataset.classes, preprocess: source.preprocess, inputSize: size } });
    await writeJsonAtomic(join(options.out, 'labels.json'), dataset.classes);
    await writeJsonAtomic(join(options.out, 'config.json'), { ...effectiveConfig(options), lr, inputSize: size, backend: backend.label, frozenLayers: frozenCount });
    await writeJsonAtomic(join(options.out, 'split.json'), { root: dataset.root, seed: options.seed, val: options.val, test: options.test, layout: dataset.layout, files: dataset.splitMap });
    const result: FinetuneResult = {
      outDir: options.out,
      classes: dataset.classes,
      history,
      test: test ? { ...test, count: dataset.splits.test.length } : null,
      frozenLayers: frozenCount,
      totalLayers: backbone.layers.length,
      trainableParams: full.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0),
      boundaryLayers: cut.frozen ? cut.boundaryLayers : [],
      cache: { enabled: useCache, hitRate: cache?.hitRate() ?? 0, spilled: cache?.spilled ?? 0 },
      best,
      stopReason,
      tensorsAfterEpoch,
      wasmHeapBytes: wasmHeapBytes(),
      skipped: dataset.skipped,
    };
    await writeJsonAtomic(join(options.out, 'report.json'), { schemaVersion: 1, kind: 'finetune', backend: backend.label, model: source.name, config: effectiveConfig(options), ...result });
    return result;
  } finally {
    tf.dispose(bestWeights);
    await pool?.close();
    cache?.dispose();
    optimizer.dispose();
    // tfjs counts a layer's references per application: tail layers were applied twice (full and tail), frozen
    // layers once, so the tail is disposed and the frozen container (which owns nothing of its own) is not.
    if (cut.tail !== full) cut.tail.dispose();
    full.dispose();
  }
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
  async trainStep(batch: Batch, optimizer: ReturnType<Tf['train']['adam']>, accumulate: number): Promise<{ loss: number; correct: number }> {
    const tf = this.tf;
    const tail = this.cut.tail;
    const n = batch.items.length;
    const arrays = await this.boundary(batch);
    const parts = this.pool ? Math.min(n, this.pool.size + 1) : 1;
    const counts = Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
    const starts = counts.map((_, i) => counts.slice(0, i).reduce((a, b) => a + b, 0));
    let remote: Promise<ShardResult[]> = Promise.resolve([]);
    if (this.pool && parts > 1) {
      // Weights go out first so the replicas work while this thread computes its own shard.
      const weights = tail.weights.map((w) => ({ name: w.originalName, data: w.read().dataSync() as Float32Array }));
      const shards: Shard[] = counts.slice(1).map((count, k) => {
        const start = starts[k + 1]!;
        return {
          inputs: this.floats.map((floats, b) => ({ shape: [count, ...this.cut.boundaryShapes[b]!], data: arrays[b]!.slice(start * floats, (start + count) * floats) })),
          labels: batch.labels.slice(start, start + count),
          scale: count / n,
        };
      });
      remote = this.pool.step(weights, shards, accumulate);
    }
    const localCount = counts[0]!;
    const inputs = this.tensors(arrays.map((a, b) => a.subarray(0, localCount * this.floats[b]!)), localCount);
    let local: Awaited<ReturnType<typeof shardGradients>>;
    try {
      local = await shardGradients(tf, tail, inputs, batch.labels.subarray(0, localCount), this.dataset.classes.length, accumulate, localCount / n);
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
    optimizer.applyGradients(grads as Record<string, ReturnType<Tf['variable']>>);
    tf.dispose([...local.grads, ...Object.values(grads)]);
    return { loss: (local.lossSum + others.reduce((a, r) => a + r.lossSum, 0)) / n, correct: local.correct + others.reduce((a, r) => a + r.correct, 0) };
  }

  /** Whether every trainable weight of the tail is finite. */
  weightsFinite(): boolean {
    const tf = this.tf;
    const ok = tf.tidy(() => tf.all(tf.stack(this.cut.tail.trainableWeights.map((w) => tf.all(tf.isFinite(w.read()))))));
    const value = ok.dataSync()[0] === 1;
    ok.dispose();
    return value;
  }

  /** Loss and accuracy over `items` in inference mode. */
  async evaluate(items: ImageItem[], batchSize: number, onProgress?: (done: number, total: number) => void): Promise<{ loss: number; accuracy: number }> {
    const tf = this.tf;
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for await (const batch of this.dataset.source.batches(items, { batchSize })) {
      const inputs = this.tensors(await this.boundary(batch), batch.items.length);
      const [loss, hits] = tf.tidy(() => {
        const probs = this.cut.tail.predict(inputs.length === 1 ? inputs[0]! : inputs, { batchSize: batch.items.length }) as Tensor;
        const labels = tf.tensor1d(batch.labels, 'int32');
        return [tf.mul(crossEntropy(tf, probs, tf.oneHot(labels, this.dataset.classes.length)), batch.items.length), tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), labels), 'float32'))];
      });
      lossSum += (await loss.data())[0]!;
      correct += (await hits.data())[0]!;
      tf.dispose([loss, hits, ...inputs]);
      seen += batch.items.length;
      onProgress?.(seen, items.length);
    }
    return { loss: lossSum / Math.max(1, seen), accuracy: correct / Math.max(1, seen) };
  }
}

/** The options as saved with a run (everything but callbacks). */
function effectiveConfig(options: FinetuneOptions): Omit<FinetuneOptions, 'onProgress' | 'onDownload' | 'interrupt'> {
  const { onProgress: _onProgress, onDownload: _onDownload, interrupt: _interrupt, ...config } = options;
  return config;
}

async function writeMetricsCsv(path: string, rows: EpochRow[]): Promise<void> {
  const columns: (keyof EpochRow)[] = ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr', 'seconds', 'img_per_s'];
  const fmt = (v: number | null) => (v === null ? '' : Number.isInteger(v) ? String(v) : v.toPrecision(6));
  await writeFileAtomic(path, `${columns.join(',')}\n${rows.map((r) => columns.map((c) => fmt(r[c])).join(',')).join('\n')}\n`);
}

