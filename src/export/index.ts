// `tl export`: a run or registry model as ONNX (one .onnx file) or as a TensorFlow.js LayersModel folder.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tf } from '../backend/index.js';
import { runFile } from '../data/index.js';
import { exportOnnx } from '../onnx/export.js';
import { DEPLOY_CARD, deployCard, onnxMetadata, readLayersMetadata, type TrainedModelMeta } from '../registry/metadata.js';
import { OnnxSession } from '../onnx/runtime.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { resolveModel } from '../weights/resolve.js';
import { saveLayersModel } from '../weights/save.js';

export const EXPORT_FORMATS = ['onnx', 'tfjs'] as const;

export interface ExportOptions {
  model: string;
  format: (typeof EXPORT_FORMATS)[number];
  out: string;
  /** Registry models: with the ImageNet top (default) or without. */
  includeTop?: boolean;
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  store?: string;
}

export interface ExportResult {
  out: string;
  format: (typeof EXPORT_FORMATS)[number];
  bytes: number;
  layers: number;
  inputShape: (number | null)[];
  outputShapes: (number | null)[][];
  /** For ONNX: the graph opened in ONNX Runtime, which checks it. */
  checked: boolean;
}

/** Writes `options.model` in `options.format`. */
export async function exportModel(tf: Tf, options: ExportOptions): Promise<ExportResult> {
  const r = await resolveModel(tf, options.model, { top: options.includeTop ?? true, weights: options.weights ?? 'pretrained', ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.store ? { store: options.store } : {}) });
  const { model } = r;
  // Labels, preprocessing, input size and temperature travel with every export (ONNX metadata_props; the tfjs
  // folder's model.json metadata and a labels.json beside it), as in the run's own model.onnx.
  const metadata: Record<string, unknown> | undefined = r.source.kind === 'registry'
    ? { tl: { model: r.name, preprocess: r.preprocess, inputSize: r.inputSize, ...(r.classes ? { classes: r.classes } : {}) } }
    : r.userDefinedMetadata;
  const meta: TrainedModelMeta | null = readLayersMetadata(metadata);
  try {
    let bytes: number;
    let checked = false;
    if (options.format === 'onnx') {
      const data = exportOnnx(model, meta ? { name: meta.name, metadata: onnxMetadata(meta) } : {});
      // ONNX Runtime parses and type-checks the graph when it opens it.
      const session = await OnnxSession.open(data, { threads: 1 });
      await session.close();
      checked = true;
      await writeFileAtomic(options.out, data);
      bytes = data.length;
    } else {
      await saveLayersModel(tf, model, options.out, metadata ?? {});
      if (meta) {
        await writeJsonAtomic(runFile(options.out, 'labels'), meta.classes);
        await writeJsonAtomic(join(options.out, DEPLOY_CARD), deployCard(meta));
      }
      bytes = (await stat(join(options.out, 'weights.bin'))).size + (await stat(join(options.out, 'model.json'))).size;
    }
    return { out: options.out, format: options.format, bytes, layers: model.layers.length, inputShape: model.inputs[0]!.shape, outputShapes: model.outputs.map((o) => o.shape), checked };
  } finally {
    model.dispose();
  }
}
