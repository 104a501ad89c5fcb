// `tl predict`: class probabilities for images from a fine-tuned run or a registry classifier.
import type { Tf } from '../backend/index.js';
import { ImageSource, listImages, type SkippedFile } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { DownloadProgress } from '../weights/download.js';
import { loadClassifier, runBatches, type RunOptions } from './index.js';

export interface PredictOptions extends RunOptions {
  model: string;
  inputs: string[];
  top: number;
  onDownload?: (p: DownloadProgress) => void;
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
}

/** The `top` most probable classes of every image. */
export async function predict(tf: Tf, options: PredictOptions): Promise<PredictResult> {
  const { items, skipped } = await listImages(options.inputs);
  if (items.length === 0) throw new UsageError(`No images to predict in ${options.inputs.join(', ')}${skipped.length ? ` (${skipped.map((s) => `${s.path}: ${s.reason}`).join('; ')})` : ''}.`);
  const im = await loadClassifier(tf, options.model, { ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}) });
  try {
    const classes = im.classes!;
    const k = Math.min(options.top, classes.length);
    const source = new ImageSource(items, { size: im.inputSize, ...(options.resize ? { resize: options.resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
    const predictions: Prediction[] = [];
    for await (const batch of runBatches(tf, im, source, items, { batchSize: options.batchSize, workers: options.workers, backend: options.backend, engine: options.engine ?? 'tfjs', ...(options.store ? { store: options.store } : {}) })) {
      batch.items.forEach((item, i) => {
        const row = Array.from(batch.outputs.subarray(i * batch.width, (i + 1) * batch.width));
        const order = row.map((p, c) => [p, c] as const).sort((a, b) => b[0] - a[0]).slice(0, k);
        predictions.push({ path: item.path, top: order.map(([p, c]) => ({ class: classes[c]!, probability: p })) });
      });
      options.onProgress?.(predictions.length, items.length);
    }
    return { model: im.name, classes, predictions, skipped: [...skipped, ...source.skipped] };
  } finally {
    im.dispose();
  }
}
