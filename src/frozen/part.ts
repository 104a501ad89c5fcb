// The tail's inputs for each batch: boundary tensors from the feature cache, or from running the frozen part on ONNX
// Runtime or TensorFlow.js (its shards on the worker replicas); and evaluation of the tail on them.
import type { Tensor, Tf } from '../backend/index.js';
import type { Cut } from '../model/index.js';
import { preprocess, preprocessPixels, type Batch, type Dataset, type ImageItem } from '../data/index.js';
import type { OnnxSession } from '../onnx/runtime.js';
import type { PreprocessMode } from '../registry/index.js';
import type { ReplicaPool } from '../replicas/pool.js';
import { isHit, lossOfImage, targetRows } from '../model/loss.js';
import type { OutputCache } from './cache.js';


/** The tail's forward pass elsewhere than TensorFlow.js (ONNX Runtime's compiled graph, see onnx/tail.ts). */
export interface TailRunner {
  /** Reads the tail's current weights (called before each evaluation). */
  refresh(): void;
  /** The probabilities [n, classes] of a batch's boundary arrays. */
  predict(boundary: Float32Array[], n: number): Promise<Float32Array>;
  /** Each training BatchNormalization's batch mean and variance over a batch, by moving statistic's variable name. */
  batchStatistics(boundary: Float32Array[], n: number): Promise<Map<string, Float32Array>>;
}

/** Test-split outputs kept for the full metrics. */
export interface KeptOutputs {
  probs: Float32Array[];
  labels: number[];
  paths: string[];
}

/** Where an image's frozen-part outputs are cached: its path, or (an augmented view) its path and view. */
const cacheKey = (item: ImageItem): string => (item.view ? `${item.path}\0view ${item.view.index}` : item.path);

export class FrozenPart {
  private readonly floats: number[];
  private frozenLoaded: Promise<void> | null = null;
  private session: Promise<OnnxSession> | null = null;
  /** Where `evaluate` runs the tail: ONNX Runtime's compiled forward pass once set, TensorFlow.js until then. */
  tail: TailRunner | null = null;

  constructor(
    private readonly tf: Tf,
    private readonly cut: Cut,
    private readonly preprocessMode: PreprocessMode,
    private readonly dataset: Dataset,
    private readonly cache: OutputCache | null,
    private readonly pool: ReplicaPool | null,
    /** Opens the frozen part's ONNX Runtime session (null: it runs on TensorFlow.js); opened when first needed. */
    private readonly openOnnx: (() => Promise<OnnxSession>) | null,
  ) {
    this.floats = cut.boundaryShapes.map((s) => s.reduce((a, b) => a * b, 1));
  }

  private pixelsTensor(pixels: Uint8Array, n: number): Tensor {
    const size = this.dataset.source.size;
    return this.tf.tidy(() => preprocess(this.tf, this.tf.tensor4d(Float32Array.from(pixels), [n, size, size, 3]), this.preprocessMode));
  }

  /**
   * Runs the frozen part over the `items` the cache lacks, in batches, filling the cache (the outputs every epoch then
   * reads); returns how many images it ran. `shouldStop` is asked between batches.
   */
  async fill(items: readonly ImageItem[], batchSize: number, options: { onProgress?: (done: number, total: number) => void; shouldStop?: () => boolean } = {}): Promise<number> {
    if (this.cut.frozen === null || this.cache === null) return 0;
    const missing = items.filter((item) => !this.cache!.has(cacheKey(item)));
    let done = 0;
    for await (const batch of this.dataset.source.batches(missing, { batchSize, needPixels: this.needsPixels })) {
      if (options.shouldStop?.()) break;
      await this.boundary(batch);
      done += batch.items.length;
      options.onProgress?.(done, missing.length);
    }
    return done;
  }

  /**
   * Closes the frozen part's ONNX Runtime session when the cache holds the outputs of every one of `items` (its arena
   * is a few hundred MB that later epochs do not need); a later miss opens it again.
   */
  async releaseIfCached(items: readonly ImageItem[]): Promise<void> {
    if (this.session === null || this.cache === null || !items.every((item) => this.cache!.has(cacheKey(item)))) return;
    const session = this.session;
    this.session = null;
    await (await session).close();
  }

  /** Closes the frozen part's session, if open. */
  async close(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session) await (await session).close();
  }

  /** Whether `boundary` needs the image's pixels (false when its outputs are cached): what the loader may skip decoding. */
  readonly needsPixels = (item: ImageItem): boolean => this.cut.frozen === null || this.cache === null || !this.cache.has(cacheKey(item));

  /**
   * The tail's inputs for a batch, one joined array per input: from the cache, or by running the frozen part. With
   * `into`, each is written into its array from image `at` on and returned as a view there (a chunk of batches then
   * lies end to end in one buffer, which the trainer feeds without copying).
   */
  async boundary(batch: Batch, into?: { arrays: Float32Array[]; at: number }): Promise<Float32Array[]> {
    const n = batch.items.length;
    if (this.cut.frozen === null) {
      const x = this.pixelsTensor(batch.pixels, n);
      const data = (await x.data()) as Float32Array;
      x.dispose();
      return [data];
    }
    const perImage: (Float32Array[] | undefined)[] = batch.items.map((item) => this.cache?.get(cacheKey(item)));
    const missing = perImage.flatMap((v, i) => (v === undefined ? [i] : []));
    if (missing.length > 0) {
      const imageBytes = this.dataset.source.imageBytes;
      const pixels = new Uint8Array(missing.length * imageBytes);
      missing.forEach((i, k) => pixels.set(batch.pixels.subarray(i * imageBytes, (i + 1) * imageBytes), k * imageBytes));
      const data = await this.runFrozen(pixels, missing.length);
      missing.forEach((i, k) => {
        const tensors = data.map((d, b) => d.slice(k * this.floats[b]!, (k + 1) * this.floats[b]!));
        perImage[i] = tensors;
        this.cache?.set(cacheKey(batch.items[i]!), tensors);
      });
    }
    return this.floats.map((floats, b) => {
      const joined = into ? into.arrays[b]!.subarray(into.at * floats, (into.at + n) * floats) : new Float32Array(n * floats);
      perImage.forEach((t, i) => joined.set(t![b]!, i * floats));
      return joined;
    });
  }

  /** The frozen part's outputs for `m` images, one joined array per boundary tensor; shards go to the replicas. */
  private async runFrozen(pixels: Uint8Array, m: number): Promise<Float32Array[]> {
    const frozen = this.cut.frozen!;
    const size = this.dataset.source.size;
    if (this.openOnnx) {
      this.session ??= this.openOnnx();
      return (await this.session).run([{ data: preprocessPixels(pixels, this.preprocessMode), shape: [m, size, size, 3] }]);
    }
    const perImage = size * size * 3;
    const parts = this.pool ? Math.min(m, this.pool.size + 1) : 1;
    const counts = Array.from({ length: parts }, (_, i) => Math.floor(m / parts) + (i < m % parts ? 1 : 0));
    let remote: Promise<Float32Array[][]> = Promise.resolve([]);
    if (this.pool && parts > 1) {
      this.frozenLoaded ??= this.pool.loadFrozen(frozen);
      await this.frozenLoaded;
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

  /**
   * Loss and accuracy of the tail in inference mode over `items` (`lossOfImage` and `isHit`: Keras's cross-entropy,
   * or binary cross-entropy, of probabilities clipped to [1e-7, 1 - 1e-7]): on ONNX Runtime where the run has the
   * tail's compiled forward pass, else on TensorFlow.js, with the weights its tfjs variables hold now.
   */
  async evaluate(items: ImageItem[], batchSize: number, onProgress?: (done: number, total: number) => void, keep?: KeptOutputs): Promise<{ loss: number; accuracy: number }> {
    const k = this.dataset.classes.length;
    const targets = this.dataset.labelSets ? targetRows(this.dataset.labelSets, k) : null;
    this.tail?.refresh();
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for await (const batch of this.dataset.source.batches(items, { batchSize, needPixels: this.needsPixels })) {
      const n = batch.items.length;
      const arrays = await this.boundary(batch);
      const probs = this.tail ? await this.tail.predict(arrays, n) : await this.tfjsProbs(arrays, n);
      batch.labels.forEach((label, i) => {
        lossSum += lossOfImage(probs, i * k, k, label, targets);
        if (isHit(probs, i * k, k, label, targets)) correct++;
      });
      if (keep) {
        keep.probs.push(probs);
        keep.labels.push(...batch.labels);
        keep.paths.push(...batch.items.map((i) => i.path));
      }
      seen += n;
      onProgress?.(seen, items.length);
    }
    return { loss: lossSum / Math.max(1, seen), accuracy: correct / Math.max(1, seen) };
  }

  /** The tail's probabilities on TensorFlow.js (its variables, in inference mode). */
  private async tfjsProbs(arrays: Float32Array[], n: number): Promise<Float32Array> {
    const tf = this.tf;
    const probs = tf.tidy(() => {
      const inputs = this.cut.boundaryShapes.map((shape, b) => tf.tensor(arrays[b]!, [n, ...shape]));
      return this.cut.tail.predict(inputs.length === 1 ? inputs[0]! : inputs, { batchSize: n }) as Tensor;
    });
    const data = (await probs.data()) as Float32Array;
    probs.dispose();
    return data;
  }
}
