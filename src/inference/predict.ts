// `tl predict`: class probabilities for images from a fine-tuned run or a registry classifier.
import { DEFAULT_RESIZE } from '../data/modes.js';
import { CORE_ENGINE } from '../engine/names.js';
import type { Tf } from '../backend/index.js';
import { ImageSource, listImages, type SkippedFile } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { DownloadProgress } from '../weights/download.js';
import { loadClassifier, runBatches, runBatchesTta, type RunOptions } from './index.js';
import { join } from 'node:path';
import { datasetDigest, finishShard, openShardFolder, shardOf, weightsDigest, type Shard } from '../shard/index.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface PredictOptions extends RunOptions {
  model: string;
  inputs: string[];
  top: number;
  onDownload?: (p: DownloadProgress) => void;
  /** Also write the predictions as JSON lines (one image per line, in input order) to this file. */
  out?: string;
  /** Only this shard's images; `out` is then a folder and the shard writes `<out>/shard-I-of-N/` for `tl merge`. */
  shard?: Shard;
}

export interface Prediction {
  path: string;
  top: { class: string; probability: number }[];
}

export interface PredictResult {
  model: string;
  classes: string[];
  predictions: Prediction[];
  skipped: SkippedFile[];
  /** The JSON lines file written (with `out`). */
  file?: string;
}

/** One image's line in predictions.jsonl. */
const line = (p: Prediction) => `${JSON.stringify(p)}\n`;

/** The `top` most probable classes of every image. */
export async function predict(tf: Tf, options: PredictOptions): Promise<PredictResult> {
  const listed = await listImages(options.inputs);
  const { skipped } = listed;
  const shard = options.shard;
  const items = shard ? listed.items.filter((item) => shardOf(item.rel, shard.count) === shard.index) : listed.items;
  if (listed.items.length === 0) throw new UsageError(`No images to predict in ${options.inputs.join(', ')}${skipped.length ? ` (${skipped.map((s) => `${s.path}: ${s.reason}`).join('; ')})` : ''}.`);
  const im = await loadClassifier(tf, options.model, { ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  try {
    const classes = im.classes!;
    const k = Math.min(options.top, classes.length);
    const source = new ImageSource(items, { size: im.inputSize, ...(options.resize ? { resize: options.resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
    const predictions: Prediction[] = [];
    for await (const batch of (options.tta ? runBatchesTta : runBatches)(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? CORE_ENGINE, ...(options.store ? { store: options.store } : {}) })) {
      batch.items.forEach((item, i) => {
        const row = Array.from(batch.outputs.subarray(i * batch.width, (i + 1) * batch.width));
        const order = row.map((p, c) => [p, c] as const).sort((a, b) => b[0] - a[0]).slice(0, k);
        predictions.push({ path: item.path, top: order.map(([p, c]) => ({ class: classes[c]!, probability: p })) });
      });
      options.onProgress?.(predictions.length, items.length);
    }
    let file: string | undefined;
    if (shard && options.out) {
      const folder = await openShardFolder(options.out, shard);
      file = join(folder, 'predictions.jsonl');
      await writeFileAtomic(file, predictions.map(line).join(''));
      const position = new Map(listed.items.map((item, i) => [item.path, i]));
      const key = { model: im.name, weights: weightsDigest(im.model), top: k, inputSize: im.inputSize, preprocess: im.preprocess, resize: options.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels ?? 0, engine: options.engine ?? CORE_ENGINE, tta: options.tta ?? false, images: listed.items.length, inputs: await datasetDigest(listed.items) };
      const rows = predictions.map((p) => ({ path: p.path, rel: listed.items[position.get(p.path)!]!.rel, position: position.get(p.path)! }));
      await finishShard(folder, { command: 'predict', shard, key }, rows, source.skipped, ['predictions.jsonl']);
    } else if (options.out) {
      file = options.out;
      await writeFileAtomic(file, predictions.map(line).join(''));
    }
    return { model: im.name, classes, predictions, skipped: [...skipped, ...source.skipped], ...(file ? { file } : {}) };
  } finally {
    im.dispose();
  }
}
