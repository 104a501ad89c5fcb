// Models for inference (classifiers and feature extractors) and running them over images in batches.
import type { EngineName } from '../engine/names.js';
import type { BackendChoice, LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { preprocess, preprocessPixels, RESIZE_MODES, type Batch, type ImageItem, type ImageSource, type ResizeMode } from '../data/index.js';
import { onnxSessionFor } from '../engine/index.js';
import { UsageError, WeightsError } from '../errors.js';
import { resolveVariant, type PreprocessMode } from '../registry/index.js';
import { ReplicaPool } from '../replicas/pool.js';
import { modelSource, resolveModel, type ResolvedModel } from '../weights/resolve.js';
import { resampleBox } from '../util/resample.js';
import type { DownloadProgress } from '../weights/download.js';

export interface InferenceModel {
  /** Image batch [n, size, size, 3] (preprocessed) -> one output. */
  model: LayersModel;
  name: string;
  preprocess: PreprocessMode;
  inputSize: number;
  /** Class names of a classifier's outputs, in order. */
  classes: string[] | null;
  /** How images were fitted to the input in training, where the model says (a run's classifier). */
  resize?: ResizeMode;
  /** Several labels per image (a sigmoid classifier): each label's threshold, where the model says. */
  thresholds?: number[];
  /** The layer whose output the model gives. */
  outputLayer: string;
  /** Output shape without the batch dimension. */
  outputShape: number[];
  /** Disposes every layer the model holds. */
  dispose(): void;
}

export interface InferenceOptions {
  store?: string;
  /** Needed for LayersModels tl did not write. */
  preprocess?: PreprocessMode;
  onDownload?: (p: DownloadProgress) => void;
}

function wrap(tf: Tf, owner: LayersModel, output: SymbolicTensor, base: Omit<InferenceModel, 'model' | 'outputLayer' | 'outputShape' | 'dispose'>): InferenceModel {
  const model = output === owner.outputs[0] ? owner : tf.model({ inputs: owner.inputs, outputs: output, name: `${owner.name}_out` });
  return {
    ...base,
    model,
    outputLayer: output.sourceLayer.name,
    outputShape: output.shape.slice(1) as number[],
    // A sub-model shares the owner's layers: disposing the owner frees them.
    dispose: () => owner.dispose(),
  };
}

const want = (options: InferenceOptions) => ({ ...(options.store ? { store: options.store } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });

/** A classifier: a run folder tl wrote (its classes), or a registry model with its top (e.g. ImageNet). */
export async function loadClassifier(tf: Tf, spec: string, options: InferenceOptions = {}): Promise<InferenceModel> {
  const r = await resolveModel(tf, spec, { top: true, ...want(options) });
  const { model } = r;
  if (r.headless) {
    model.dispose();
    throw new UsageError(`${spec} holds a backbone without a classifier, so it has no classes to predict.`, { suggestion: 'Fine-tune it first (tl finetune --model ...), then pass the run folder.' });
  }
  const units = model.outputs[0]!.shape.at(-1) as number;
  const classes = r.classes ?? Array.from({ length: units }, (_, i) => `class_${i}`);
  if (classes.length !== units) {
    model.dispose();
    throw new WeightsError(`${spec}: the model has ${units} outputs but its metadata names ${classes.length} classes.`);
  }
  const resize = recordedResize(r);
  const thresholds = r.tl?.thresholds;
  if (thresholds && thresholds.length !== units) {
    model.dispose();
    throw new WeightsError(`${spec}: the model has ${units} outputs but its metadata gives ${thresholds.length} thresholds.`);
  }
  return wrap(tf, model, model.outputs[0]!, { name: r.name, preprocess: r.preprocess, inputSize: r.inputSize, classes, ...(resize ? { resize } : {}), ...(thresholds ? { thresholds } : {}) });
}

/**
 * What `tl rank` runs over a dataset: a registry model's pooled features and, where the model keeps the classifier it
 * was trained with (the nsfwjs models), that classifier's probabilities, joined into one output of
 * `featureSize + sourceClasses` columns so that one pass gives both. At the model's own input size only: the source
 * classifier was trained there.
 */
export async function loadRankingModel(tf: Tf, spec: string, options: InferenceOptions & { inputSize?: number } = {}): Promise<{ model: InferenceModel; featureSize: number; sourceClasses: number }> {
  const source = modelSource(spec);
  const resolved = source.kind === 'registry' ? resolveVariant(spec).variant : null;
  if (!resolved || resolved.head !== 'nsfwjs' || (options.inputSize !== undefined && options.inputSize !== resolved.inputSize)) {
    const model = await loadFeatureModel(tf, spec, options);
    return { model, featureSize: model.outputShape.reduce((a, b) => a * b, 1), sourceClasses: 0 };
  }
  const p = await resolveModel(tf, spec, { top: true, ...want(options) });
  try {
    const last = [...p.model.layers].reverse().find((l) => !Array.isArray(l.output) && (l.output as SymbolicTensor).shape.length === 4 && l.getClassName() !== 'AveragePooling2D');
    if (!last) throw new WeightsError(`${spec} has no feature map to pool.`);
    const pooled = tf.layers.globalAveragePooling2d({ name: 'rank_features_pool' }).apply(last.output as SymbolicTensor) as SymbolicTensor;
    const joined = tf.layers.concatenate({ axis: -1, name: 'rank_features_and_source' }).apply([pooled, p.model.outputs[0]!]) as SymbolicTensor;
    const model = tf.model({ inputs: p.model.inputs, outputs: joined, name: `${p.model.name}_rank` });
    const featureSize = pooled.shape[1] as number;
    const sourceClasses = p.model.outputs[0]!.shape[1] as number;
    return { model: { name: p.name, preprocess: p.preprocess, inputSize: p.inputSize, classes: null, model, outputLayer: last.name, outputShape: [featureSize + sourceClasses], dispose: () => p.model.dispose() }, featureSize, sourceClasses };
  } catch (err) {
    p.model.dispose();
    throw err;
  }
}

/** The resize mode a model tl wrote was trained with (its metadata's), if it records one. */
function recordedResize(r: ResolvedModel): ResizeMode | undefined {
  return RESIZE_MODES.find((m) => m === r.tl?.resize);
}

/**
 * A feature extractor: by default the pooled features (global average pooling of the backbone's last feature map,
 * Keras's `pooling='avg'`; `head_pool` in a tl run), or the output of `layer`.
 */
export async function loadFeatureModel(tf: Tf, spec: string, options: InferenceOptions & { layer?: string; inputSize?: number; weights?: 'pretrained' | 'random'; seed?: number } = {}): Promise<InferenceModel> {
  const r = await resolveModel(tf, spec, { top: false, ...want(options), ...(options.weights ? { weights: options.weights } : {}), ...(options.seed !== undefined ? { seed: options.seed } : {}), ...(options.inputSize ? { inputSize: options.inputSize } : {}) });
  const owner = r.model;
  const resize = recordedResize(r);
  const base = { name: r.name, preprocess: r.preprocess, inputSize: r.inputSize, classes: null, ...(resize ? { resize } : {}) };
  try {
    if (options.layer !== undefined) {
      const layer = owner.layers.find((l) => l.name === options.layer);
      if (!layer) throw new UsageError(`--layer ${options.layer}: no layer of that name in ${base.name}.`, { suggestion: `Run \`tl models info ${r.source.kind === 'registry' ? spec : '<registry name>'}\` to list its layers.` });
      return wrap(tf, owner, layer.output as SymbolicTensor, base);
    }
    const head = owner.layers.find((l) => l.name === 'head_pool');
    if (head) return wrap(tf, owner, head.output as SymbolicTensor, base);
    const last = [...owner.layers].reverse().find((l) => !Array.isArray(l.output) && (l.output as SymbolicTensor).shape.length === 4);
    if (!last) {
      const out = owner.outputs[0]!;
      if (out.shape.length !== 2) throw new WeightsError(`${base.name} has no 4-D feature map to pool and no 2-D output; pass --layer.`);
      return wrap(tf, owner, out, base);
    }
    const pooled = tf.layers.globalAveragePooling2d({ name: 'features_pool' }).apply(last.output as SymbolicTensor) as SymbolicTensor;
    const model = tf.model({ inputs: owner.inputs, outputs: pooled, name: `${owner.name}_features` });
    return { ...base, model, outputLayer: last.name, outputShape: pooled.shape.slice(1) as number[], dispose: () => model.dispose() };
  } catch (err) {
    owner.dispose();
    throw err;
  }
}

/** How a model runs over many images: batching, threads, engine, decoding. */
export interface RunOptions {
  batchSize: number;
  workers: number;
  backend: BackendChoice;
  /** Inference engine (default tfjs); `onnx` runs the model on ONNX Runtime. */
  engine?: EngineName;
  resize?: ResizeMode;
  maxPixels?: number;
  store?: string;
  /** Test-time augmentation: each image's outputs averaged with its mirror image's (`runBatchesTta`). */
  tta?: boolean;
  /** Test-time augmentation: also with its zoomed centre's (`zoomed`). */
  ttaZoom?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** One batch of outputs: `outputs` holds `items.length` rows of `width` floats. */
export interface OutputBatch {
  items: ImageItem[];
  outputs: Float32Array;
  width: number;
}

/**
 * Runs `model` over `items` in batches (decoded ahead; files that fail are skipped and recorded in
 * `source.skipped`); with `workers` > 1, worker threads take shares of every batch.
 */
export async function* runBatches(tf: Tf, im: InferenceModel, source: Pick<ImageSource, 'size' | 'batches'>, items: readonly ImageItem[], options: { batchSize: number; workers?: number; backend?: BackendChoice; engine?: EngineName; store?: string }): AsyncGenerator<OutputBatch> {
  const width = im.outputShape.reduce((a, b) => a * b, 1);
  const size = source.size;
  const perImage = size * size * 3;
  if (options.engine === 'onnx') {
    // ONNX Runtime uses every core itself: no worker threads, and preprocessing in plain arrays.
    const session = await onnxSessionFor(im.model, options.store ? { store: options.store } : {});
    try {
      for await (const batch of source.batches(items, { batchSize: options.batchSize })) {
        const n = batch.items.length;
        const [outputs] = await session.run([{ data: preprocessPixels(batch.pixels, im.preprocess), shape: [n, size, size, 3] }]);
        yield { items: batch.items, outputs: outputs!, width };
      }
    } finally {
      await session.close();
    }
    return;
  }
  const pool = (options.workers ?? 1) > 1 && options.backend ? ReplicaPool.spawn(options.workers! - 1, options.backend) : null;
  let poolReady: Promise<void> | null = null;
  const input = (pixels: Uint8Array, n: number) => tf.tidy(() => preprocess(tf, tf.tensor4d(Float32Array.from(pixels), [n, size, size, 3]), im.preprocess));
  const local = async (pixels: Uint8Array, n: number): Promise<Float32Array> => {
    const y = tf.tidy(() => im.model.predict(input(pixels, n), { batchSize: n }) as ReturnType<Tf['tensor']>);
    const data = (await y.data()) as Float32Array;
    y.dispose();
    return data;
  };
  try {
    for await (const batch of source.batches(items, { batchSize: options.batchSize })) {
      const n = batch.items.length;
      const parts = pool ? Math.min(n, pool.size + 1) : 1;
      if (!pool || parts === 1) {
        yield { items: batch.items, outputs: await local(batch.pixels, n), width };
        continue;
      }
      poolReady ??= pool.loadFrozen(im.model);
      await poolReady;
      const counts = Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
      const x = input(batch.pixels.subarray(counts[0]! * perImage), n - counts[0]!);
      const all = (await x.data()) as Float32Array;
      x.dispose();
      let at = 0;
      const remote = pool.infer(counts.slice(1).map((count) => {
        const shard = { shape: [count, size, size, 3], data: all.slice(at * perImage, (at + count) * perImage) };
        at += count;
        return shard;
      }));
      const mine = await local(batch.pixels.subarray(0, counts[0]! * perImage), counts[0]!);
      const outputs = new Float32Array(n * width);
      outputs.set(mine, 0);
      let row = counts[0]!;
      for (const shard of await remote) {
        outputs.set(shard[0]!, row * width);
        row += shard[0]!.length / width;
      }
      yield { items: batch.items, outputs, width };
    }
  } finally {
    await pool?.close();
  }
}

/** A batch of NHWC uint8 images, each mirrored left to right. */
export function mirrored(pixels: Uint8Array, n: number, size: number): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < size; y++) {
      const row = (i * size + y) * size * 3;
      for (let x = 0; x < size; x++) out.set(pixels.subarray(row + x * 3, row + x * 3 + 3), row + (size - 1 - x) * 3);
    }
  }
  return out;
}

/** A test-time view of a batch of NHWC uint8 images. */
export type TtaView = (pixels: Uint8Array, n: number, size: number) => Uint8Array;

/** The share of each side a zoomed view keeps (timm's crop_pct of 0.875), centred, resized back to the input size. */
export const ZOOM = 0.875;

/** A batch of NHWC uint8 images, each its centre ZOOM of a side resized back to `size` (bilinear). */
export function zoomed(pixels: Uint8Array, n: number, size: number): Uint8Array {
  const out = new Uint8Array(pixels.length);
  const crop = size * ZOOM;
  const offset = (size - crop) / 2;
  const box = { x: offset, y: offset, width: crop, height: crop };
  for (let i = 0; i < n; i++) resampleBox(pixels, size, size, 3, box, size, out, i * size * size * 3, i * size * size * 3);
  return out;
}

/** The views `--tta` (the mirror image) and `--tta-zoom` (the zoomed image, and with --tta its mirror too) add. */
export function ttaViews(options: { tta?: boolean; ttaZoom?: boolean }): TtaView[] {
  const views: TtaView[] = [];
  if (options.tta) views.push(mirrored);
  if (options.ttaZoom) views.push(zoomed);
  if (options.tta && options.ttaZoom) views.push((p, n, size) => mirrored(zoomed(p, n, size), n, size));
  return views;
}

/**
 * `runBatches` with test-time augmentation when `views` are given: the model's outputs on each image and on each of
 * its views, averaged (for a classifier, the mean of the probability vectors). One pass per view, one decode: each
 * batch the plain pass reads is transformed and queued for every view's pass, which runs one batch behind it.
 */
export async function* runBatchesTta(tf: Tf, im: InferenceModel, source: ImageSource, items: readonly ImageItem[], options: Parameters<typeof runBatches>[4], views: TtaView[]): AsyncGenerator<OutputBatch> {
  if (views.length === 0) {
    yield* runBatches(tf, im, source, items, options);
    return;
  }
  const queues: Batch[][] = views.map(() => []);
  const teed: Pick<ImageSource, 'size' | 'batches'> = {
    size: source.size,
    async *batches(list, opts) {
      for await (const batch of source.batches(list, opts)) {
        views.forEach((view, v) => queues[v]!.push({ ...batch, pixels: view(batch.pixels, batch.items.length, source.size) }));
        yield batch;
      }
    },
  };
  // Each view's pass: the plain pass has always read a batch before the view's pass asks for it (they advance in turn).
  const passes = [runBatches(tf, im, teed, items, options), ...queues.map((queue) => runBatches(tf, im, { size: source.size, async *batches() { while (queue.length > 0) yield queue.shift()!; } }, items, options))];
  try {
    for (;;) {
      const results = [];
      for (const pass of passes) results.push(await pass.next());
      if (results.some((r) => r.done)) return;
      const outs = results.map((r) => (r.value as OutputBatch).outputs);
      const outputs = Float32Array.from(outs[0]!, (_, k) => outs.reduce((sum, o) => sum + o[k]!, 0) / outs.length);
      const first = results[0]!.value as OutputBatch;
      yield { items: first.items, outputs, width: first.width };
    }
  } finally {
    for (const pass of passes) await pass.return(undefined);
  }
}
