// What a run writes into its folder besides checkpoints: the metrics table after every epoch, then the model (tfjs
// LayersModel and model.onnx), its labels and the reports. Every file is written to a temp file and renamed.
import { join } from 'node:path';
import type { LayersModel, Tf } from '../backend/index.js';
import { exportOnnx, OnnxExportError } from '../onnx/export.js';
import type { PreprocessMode } from '../registry/index.js';
import { seedDropout } from '../replicas/gradients.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { saveLayersModel } from '../weights/save.js';

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

/** metrics.csv: one row per finished epoch. */
export async function writeMetricsCsv(out: string, rows: EpochRow[]): Promise<void> {
  const columns: (keyof EpochRow)[] = ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr', 'seconds', 'img_per_s'];
  const fmt = (v: number | null) => (v === null ? '' : Number.isInteger(v) ? String(v) : v.toPrecision(6));
  await writeFileAtomic(join(out, 'metrics.csv'), `${columns.join(',')}\n${rows.map((r) => columns.map((c) => fmt(r[c])).join(',')).join('\n')}\n`);
}

/** config.json (the effective configuration) and split.json (which file went to which split). */
export async function writeRunRecords(out: string, config: unknown, split: unknown): Promise<void> {
  await writeJsonAtomic(join(out, 'config.json'), config);
  await writeJsonAtomic(join(out, 'split.json'), split);
}

/** Each preprocessing mode as a formula on 0-255 RGB values (what src/data/preprocess.ts computes). */
const PREPROCESS_FORMULA: Record<PreprocessMode, string> = {
  caffe: 'channels reordered to BGR, then minus [103.939, 116.779, 123.68]',
  tf: 'x / 127.5 - 1',
  torch: '(x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]',
  raw01: 'x / 255',
  none: 'x (the model rescales its input itself)',
};

export interface TrainedModelMeta {
  name: string;
  classes: string[];
  preprocess: PreprocessMode;
  inputSize: number;
  /** The calibration temperature already folded into the classifier's weights (null: not calibrated). */
  temperature: number | null;
}

/**
 * What a model.onnx carries for whoever deploys it (ONNX `metadata_props`, strings): the labels in output order, the
 * preprocessing and input layout, and the temperature its outputs are already calibrated with.
 */
export function onnxMetadata(meta: TrainedModelMeta): Record<string, string> {
  return {
    'tl.model': meta.name,
    'tl.labels': JSON.stringify(meta.classes),
    'tl.preprocess': meta.preprocess,
    'tl.input': `NHWC float32 [N, ${meta.inputSize}, ${meta.inputSize}, 3]: RGB pixels (0-255) resized to ${meta.inputSize}x${meta.inputSize}, then preprocessed as tl.preprocess says`,
    'tl.preprocess.formula': PREPROCESS_FORMULA[meta.preprocess],
    'tl.temperature': meta.temperature === null ? 'none' : String(meta.temperature),
    'tl.output': 'softmax probabilities, one per label',
  };
}

/**
 * The trained model: `model/` (tfjs LayersModel with tl's metadata), labels.json and model.onnx for native inference
 * elsewhere. Returns the ONNX file, or why it was not written (a layer ONNX cannot express still gets its run folder).
 */
export async function writeTrainedModel(tf: Tf, out: string, model: LayersModel, meta: TrainedModelMeta): Promise<string> {
  seedDropout(model, null);
  await saveLayersModel(tf, model, join(out, 'model'), { tl: { model: meta.name, classes: meta.classes, preprocess: meta.preprocess, inputSize: meta.inputSize, ...(meta.temperature !== null ? { temperature: meta.temperature } : {}) } });
  await writeJsonAtomic(join(out, 'labels.json'), meta.classes);
  const onnxFile = join(out, 'model.onnx');
  try {
    await writeFileAtomic(onnxFile, exportOnnx(model, { name: meta.name, metadata: onnxMetadata(meta) }));
    return onnxFile;
  } catch (err) {
    if (!(err instanceof OnnxExportError)) throw err;
    return `not written: ${err.message}`;
  }
}
