// What a run writes into its folder besides checkpoints: the metrics table after every epoch, then the model (tfjs
// LayersModel and model.onnx), its labels and the reports. Every file is written to a temp file and renamed.
import { runFile } from '../data/index.js';
import type { LayersModel, Tf } from '../backend/index.js';
import { exportOnnx, OnnxExportError } from '../onnx/export.js';
import { DEPLOY_CARD, deployCard, layersMetadata, onnxMetadata, type TrainedModelMeta } from '../registry/metadata.js';
import { join } from 'node:path';
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
  await writeFileAtomic(runFile(out, 'metrics'), `${columns.join(',')}\n${rows.map((r) => columns.map((c) => fmt(r[c])).join(',')).join('\n')}\n`);
}

/** config.json (the effective configuration) and split.json (which file went to which split). */
export async function writeRunRecords(out: string, config: unknown, split: unknown): Promise<void> {
  await writeJsonAtomic(runFile(out, 'config'), config);
  await writeJsonAtomic(runFile(out, 'split'), split);
}

/**
 * The trained model: `model/` (tfjs LayersModel with tl's metadata), labels.json and model.onnx for native inference
 * elsewhere. Returns the ONNX file, or why it was not written (a layer ONNX cannot express still gets its run folder).
 */
export async function writeTrainedModel(tf: Tf, out: string, model: LayersModel, meta: TrainedModelMeta): Promise<string> {
  seedDropout(model, null);
  await saveLayersModel(tf, model, runFile(out, 'model'), layersMetadata(meta));
  await writeJsonAtomic(join(runFile(out, 'model'), DEPLOY_CARD), deployCard(meta));
  await writeJsonAtomic(runFile(out, 'labels'), meta.classes);
  const onnxFile = runFile(out, 'onnx');
  try {
    await writeFileAtomic(onnxFile, exportOnnx(model, { name: meta.name, metadata: onnxMetadata(meta) }));
    return onnxFile;
  } catch (err) {
    if (!(err instanceof OnnxExportError)) throw err;
    return `not written: ${err.message}`;
  }
}
