// What a classifier tl writes carries for whoever deploys it: labels, preprocessing, input layout and temperature,
// as ONNX metadata_props (strings) and as the `tl` entry of a LayersModel's userDefinedMetadata.
import { z } from 'zod';
import { WeightsError } from '../errors.js';
import { PREPROCESS_MODES, type PreprocessMode } from './types.js';

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
  /** How an image became the input size in training (center-crop, squash, pad); unknown for models saved before it was recorded. */
  resize?: string;
  /**
   * Several labels per image (sigmoid outputs): each label applies where its probability is at least its threshold,
   * tuned on the validation split. Absent for a softmax classifier (one label per image).
   */
  thresholds?: number[];
}

/** What the outputs are, in words (tl.json's `output`, the ONNX `tl.output`). */
function outputWords(meta: TrainedModelMeta): string {
  return meta.thresholds ? 'sigmoid probabilities, one per label, each on its own: a label applies where its probability is at least its threshold' : 'softmax probabilities, one per label';
}

/**
 * tl.json, beside an exported or trained TensorFlow.js model: how to feed the model and read its outputs, the same
 * facts a model.onnx carries in its metadata_props (`onnxMetadata`), as one JSON document for a browser or Node app.
 */
/** The card's file name, beside model.json. */
export const DEPLOY_CARD = 'tl.json';

export const deploySchema = z.object({
  format: z.literal('tl-model-card'),
  version: z.literal(1),
  model: z.string(),
  labels: z.array(z.string()),
  input: z.object({ layout: z.literal('NHWC'), dtype: z.literal('float32'), size: z.number().int().positive(), channels: z.literal('RGB'), range: z.literal('0-255 before preprocessing') }),
  resize: z.string().nullable(),
  preprocess: z.object({ mode: z.enum(PREPROCESS_MODES), formula: z.string() }),
  output: z.string(),
  temperature: z.number().positive().nullable(),
  /** Several labels per image: each label's threshold, in the order of labels (absent: one label per image). */
  thresholds: z.array(z.number()).optional(),
});
export type DeployCard = z.infer<typeof deploySchema>;

/** The tl.json document of a trained classifier. */
export function deployCard(meta: TrainedModelMeta): DeployCard {
  return {
    format: 'tl-model-card', version: 1, model: meta.name, labels: meta.classes,
    input: { layout: 'NHWC', dtype: 'float32', size: meta.inputSize, channels: 'RGB', range: '0-255 before preprocessing' },
    resize: meta.resize ?? null,
    preprocess: { mode: meta.preprocess, formula: PREPROCESS_FORMULA[meta.preprocess] },
    output: `${outputWords(meta)}, in the order of labels`,
    temperature: meta.temperature,
    ...(meta.thresholds ? { thresholds: meta.thresholds } : {}),
  };
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
    ...(meta.resize ? { 'tl.resize': meta.resize } : {}),
    'tl.output': outputWords(meta),
    ...(meta.thresholds ? { 'tl.thresholds': JSON.stringify(meta.thresholds) } : {}),
  };
}


/** The `tl` entry of a LayersModel's userDefinedMetadata for the same facts. */
export function layersMetadata(meta: TrainedModelMeta): { tl: Record<string, unknown> } {
  return { tl: { model: meta.name, classes: meta.classes, preprocess: meta.preprocess, inputSize: meta.inputSize, ...(meta.temperature !== null ? { temperature: meta.temperature } : {}), ...(meta.resize ? { resize: meta.resize } : {}), ...(meta.thresholds ? { thresholds: meta.thresholds } : {}) } };
}

/** The `tl` entry of a LayersModel's userDefinedMetadata: the one schema every reader checks it with. */
const tlEntrySchema = z.object({
  model: z.string(),
  classes: z.array(z.string()).optional(),
  preprocess: z.enum(PREPROCESS_MODES),
  inputSize: z.number().int().positive(),
  temperature: z.number().positive().optional(),
  resize: z.string().optional(),
  thresholds: z.array(z.number().min(0).max(1)).optional(),
});

export type TlEntry = z.infer<typeof tlEntrySchema>;

/**
 * The `tl` entry of a LayersModel's userDefinedMetadata, checked: null when there is none (a model tl did not write).
 * One that is there but malformed is an error naming `where`, never trusted through a cast.
 */
export function readTlEntry(userDefinedMetadata: unknown, where: string): TlEntry | null {
  const entry = (userDefinedMetadata as { tl?: unknown } | undefined)?.tl;
  if (entry === undefined) return null;
  const parsed = tlEntrySchema.safeParse(entry);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WeightsError(`${where}: its tl metadata is malformed (${issue.path.join('.') || 'tl'}: ${issue.message}).`, { suggestion: 'Export or train the model again with tl.' });
  }
  return parsed.data;
}

/** The facts a LayersModel's userDefinedMetadata carries (checked), or null when it has no valid `tl` entry with classes. */
export function readLayersMetadata(userDefinedMetadata: unknown): TrainedModelMeta | null {
  const parsed = tlEntrySchema.safeParse((userDefinedMetadata as { tl?: unknown } | undefined)?.tl);
  if (!parsed.success || parsed.data.classes === undefined) return null;
  const t = parsed.data;
  return { name: t.model, classes: t.classes!, preprocess: t.preprocess, inputSize: t.inputSize, temperature: t.temperature ?? null, ...(t.resize ? { resize: t.resize } : {}), ...(t.thresholds ? { thresholds: t.thresholds } : {}) };
}
