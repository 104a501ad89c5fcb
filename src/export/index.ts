// `tl export`: a run or registry model as ONNX (one .onnx file) or as a TensorFlow.js LayersModel folder.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayersModel, Tf } from '../backend/index.js';
import { ModelNotFoundError } from '../errors.js';
import { exportOnnx } from '../onnx/export.js';
import { onnxMetadata, readLayersMetadata, type TrainedModelMeta } from '../onnx/metadata.js';
import { OnnxSession } from '../onnx/runtime.js';
import { resolveVariant } from '../registry/index.js';
import { storeRoot } from '../store/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { modelJsonAt } from '../weights/backbone.js';
import { loadPretrained } from '../weights/index.js';
import { saveLayersModel } from '../weights/save.js';
import { loadLayersModelFromFolder, readModelJson } from '../weights/tfjs.js';

export interface ExportOptions {
  model: string;
  format: 'onnx' | 'tfjs';
  out: string;
  /** Registry models: with the ImageNet top (default) or without. */
  includeTop?: boolean;
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  store?: string;
}

export interface ExportResult {
  out: string;
  format: 'onnx' | 'tfjs';
  bytes: number;
  layers: number;
  inputShape: (number | null)[];
  outputShapes: (number | null)[][];
  /** For ONNX: the graph opened in ONNX Runtime, which checks it. */
  checked: boolean;
}

/** Writes `options.model` in `options.format`. */
export async function exportModel(tf: Tf, options: ExportOptions): Promise<ExportResult> {
  let model: LayersModel;
  let metadata: Record<string, unknown> | undefined;
  // Labels, preprocessing, input size and temperature travel with every export (ONNX metadata_props; the tfjs
  // folder's model.json metadata and a labels.json beside it), as in the run's own model.onnx.
  let meta: TrainedModelMeta | null;
  const local = modelJsonAt(options.model);
  if (local) {
    model = await loadLayersModelFromFolder(tf, local);
    metadata = (await readModelJson(local)).userDefinedMetadata;
    meta = readLayersMetadata(metadata);
  } else {
    if (/[/\\]/.test(options.model)) throw new ModelNotFoundError(`No model at ${options.model}: expected a tl run folder, a folder with model.json, or a model.json file.`);
    const { variant } = resolveVariant(options.model);
    const p = await loadPretrained(tf, options.model, { includeTop: options.includeTop ?? true, weights: options.weights ?? 'pretrained', ...(options.inputSize ? { inputSize: options.inputSize } : {}), store: options.store ?? storeRoot() });
    model = p.model;
    metadata = { tl: { model: variant.name, preprocess: variant.preprocess, inputSize: options.inputSize ?? variant.inputSize, ...(options.includeTop !== false && variant.topLabels ? { classes: [...variant.topLabels] } : {}) } };
    meta = readLayersMetadata(metadata);
  }
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
      if (meta) await writeJsonAtomic(join(options.out, 'labels.json'), meta.classes);
      bytes = (await stat(join(options.out, 'weights.bin'))).size + (await stat(join(options.out, 'model.json'))).size;
    }
    return { out: options.out, format: options.format, bytes, layers: model.layers.length, inputShape: model.inputs[0]!.shape, outputShapes: model.outputs.map((o) => o.shape), checked };
  } finally {
    model.dispose();
  }
}
