// `tl export`: a run or registry model as ONNX (one .onnx file) or as a TensorFlow.js LayersModel folder.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tf } from '../backend/index.js';
import { runFile } from '../data/index.js';
import { UsageError } from '../errors.js';
import { exportOnnx } from '../onnx/export.js';
import { halfPrecision } from '../onnx/float16.js';
import { exportInt8, type Int8Export } from './int8.js';
import { demoPage, writeDemo } from './demo.js';
import { DEPLOY_CARD, deployCard, onnxMetadata, readLayersMetadata, type TrainedModelMeta } from '../registry/metadata.js';
import { OnnxSession } from '../onnx/runtime.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { resolveModel } from '../weights/resolve.js';
import { saveLayersModel } from '../weights/save.js';

export const EXPORT_FORMATS = ['onnx', 'tfjs'] as const;
/**
 * How an export stores its weights: float32 as trained; float16 (half the file, cast back when loaded; both formats);
 * int8 (ONNX: QDQ, integer convolutions, calibrated on images); uint8 (TensorFlow.js: an affine map per weight, a
 * quarter of weights.bin, decoded to float32 when loaded).
 */
export const QUANTIZATIONS = ['none', 'float16', 'int8', 'uint8'] as const;
const FORMAT_OF: Record<string, (typeof EXPORT_FORMATS)[number]> = { int8: 'onnx', uint8: 'tfjs' };

export interface ExportOptions {
  model: string;
  format: (typeof EXPORT_FORMATS)[number];
  out: string;
  /** Registry models: with the ImageNet top (default) or without. */
  includeTop?: boolean;
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  store?: string;
  quantize?: (typeof QUANTIZATIONS)[number];
  /** With int8: a folder of images to calibrate on (default: the run's training split). */
  calibration?: string;
  /** With int8: how many images calibrate. */
  calibrationImages?: number;
  /** Also write index.html beside the model: a page that classifies an image in the browser. */
  demo?: boolean;
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
  /** With --quantize float16: the weights stored as float16, and those kept float32 (beyond float16's range). */
  float16?: { converted: number; kept: string[] };
  /** With --quantize int8: what was quantized, on which images, and float32 against int8 on the run's test split. */
  int8?: Int8Export;
  /** With --demo: the page written beside the model. */
  demo?: string;
}

/** Writes `options.model` in `options.format`. */
export async function exportModel(tf: Tf, options: ExportOptions): Promise<ExportResult> {
  const quantize = options.quantize ?? 'none';
  const only = FORMAT_OF[quantize];
  if (only && options.format !== only) throw new UsageError(`--quantize ${quantize} applies to ${only === 'onnx' ? 'ONNX' : 'TensorFlow.js'} exports; ${only === 'onnx' ? 'a TensorFlow.js export takes float16 or uint8' : 'an ONNX export takes float16 or int8'}.`);
  const r = await resolveModel(tf, options.model, { top: options.includeTop ?? true, weights: options.weights ?? 'pretrained', ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.store ? { store: options.store } : {}) });
  const { model } = r;
  // Labels, preprocessing, input size and temperature travel with every export (ONNX metadata_props; the tfjs
  // folder's model.json metadata and a labels.json beside it), as in the run's own model.onnx.
  const metadata: Record<string, unknown> | undefined = r.source.kind === 'registry'
    ? { tl: { model: r.name, preprocess: r.preprocess, inputSize: r.inputSize, ...(r.classes ? { classes: r.classes } : {}) } }
    : r.userDefinedMetadata;
  const meta: TrainedModelMeta | null = readLayersMetadata(metadata);
  let half: ReturnType<typeof halfPrecision> | null = null;
  let int8: Awaited<ReturnType<typeof exportInt8>> | null = null;
  try {
    if (options.demo && !meta) throw new UsageError(`--demo needs a classifier tl wrote (its labels and preprocessing); ${options.model} has none.`);
    // The page and the int8 check show and score one label per image.
    if (meta?.thresholds && (options.demo || quantize === 'int8')) throw new UsageError(`${options.demo ? '--demo' : '--quantize int8'} takes a classifier with one label per image; ${options.model} has several (export it without, or with --quantize float16).`);
    if (options.demo) await demoPage(options.format, options.out);
    let bytes: number;
    let checked = false;
    if (options.format === 'onnx') {
      const full = exportOnnx(model, meta ? { name: meta.name, metadata: onnxMetadata(meta) } : {});
      half = quantize === 'float16' ? halfPrecision(full) : null;
      if (quantize === 'int8') {
        if (!meta) throw new UsageError(`--quantize int8 needs a classifier tl wrote (its preprocessing and labels); ${options.model} has no tl metadata.`);
        const run = r.source.kind === 'folder' && (await stat(runFile(options.model, 'split')).catch(() => null)) ? options.model : null;
        int8 = await exportInt8(full, meta, { run, images: options.calibrationImages ?? 300, ...(options.calibration ? { calibration: options.calibration } : {}) });
      }
      const data = half?.bytes ?? int8?.bytes ?? full;
      // ONNX Runtime parses and type-checks the graph when it opens it.
      const session = await OnnxSession.open(data, { threads: 1 });
      await session.close();
      checked = true;
      await writeFileAtomic(options.out, data);
      bytes = data.length;
    } else {
      await saveLayersModel(tf, model, options.out, metadata ?? {}, quantize === 'float16' || quantize === 'uint8' ? quantize : undefined);
      if (meta) {
        await writeJsonAtomic(runFile(options.out, 'labels'), meta.classes);
        await writeJsonAtomic(join(options.out, DEPLOY_CARD), deployCard(meta));
      }
      bytes = (await stat(join(options.out, 'weights.bin'))).size + (await stat(join(options.out, 'model.json'))).size;
    }
    const demo = options.demo && meta ? await writeDemo(options.format, options.out, deployCard(meta)) : undefined;
    return { out: options.out, format: options.format, bytes, ...(demo ? { demo } : {}), layers: model.layers.length, inputShape: model.inputs[0]!.shape, outputShapes: model.outputs.map((o) => o.shape), checked, ...(half ? { float16: { converted: half.converted, kept: half.kept } } : {}), ...(int8 ? { int8: int8.info } : {}) };
  } finally {
    model.dispose();
  }
}
