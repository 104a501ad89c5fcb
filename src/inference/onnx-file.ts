// A classifier exported as ONNX by tl (`tl export`, or a run's model.onnx), read back with the facts its metadata
// carries: labels, preprocessing, resize mode and input size. ONNX Runtime runs it; TensorFlow.js is not needed.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ModelNotFoundError, WeightsError } from '../errors.js';
import type { onnx as P } from 'onnx-proto';
import { onnx } from '../onnx/graph.js';
import { OnnxSession } from '../onnx/runtime.js';
import { PREPROCESS_MODES, type PreprocessMode } from '../registry/types.js';
import { RESIZE_MODES, type ResizeMode } from '../data/modes.js';
import { ImageSource, preprocessPixels, type ImageItem, type SkippedFile } from '../data/index.js';

export interface OnnxClassifier {
  name: string;
  classes: string[];
  preprocess: PreprocessMode;
  inputSize: number;
  /** How the images were fitted to the input in training, where the file says. */
  resize: ResizeMode | null;
  /** Several labels per image (sigmoid outputs): each label's threshold; null for a softmax classifier. */
  thresholds: number[] | null;
  /** sha256 of the file. */
  digest: string;
  /** Every metadata_props entry the file carries (tl.labels, tl.preprocess, tl.input, ...). */
  metadata: Record<string, string>;
  open(options?: { threads?: number; spinning?: boolean }): Promise<OnnxSession>;
}

// Labels first: a model without them (a backbone export) is reported by what it lacks most.
const metadataSchema = z.object({
  'tl.labels': z.string().transform((s, ctx) => {
    try {
      return z.array(z.string()).min(1).parse(JSON.parse(s));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a JSON array of label names' });
      return z.NEVER;
    }
  }),
  'tl.model': z.string(),
  'tl.preprocess': z.enum(PREPROCESS_MODES),
  'tl.resize': z.enum(RESIZE_MODES).optional(),
  'tl.thresholds': z.string().transform((s, ctx) => {
    try {
      return z.array(z.number().min(0).max(1)).min(1).parse(JSON.parse(s));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a JSON array of thresholds between 0 and 1' });
      return z.NEVER;
    }
  }).optional(),
});

/** Reads `file` (a .onnx file tl wrote) and checks what it says of itself against its graph. */
export async function loadOnnxClassifier(file: string): Promise<OnnxClassifier> {
  const bytes = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new ModelNotFoundError(`No model at ${file}${err.code === 'ENOENT' ? '' : ` (${err.code ?? err.message})`}.`);
  });
  let proto: P.ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch {
    throw new WeightsError(`${file} is not an ONNX model.`);
  }
  const props = Object.fromEntries((proto.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  const parsed = metadataSchema.safeParse(props);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WeightsError(`${file} is not a classifier tl exported: its metadata ${issue.path.join('.') || ''} is ${issue.code === 'invalid_type' ? 'missing' : `malformed (${issue.message})`}.`, { suggestion: 'Export it with tl export (a run folder or a registry classifier), which records its labels and preprocessing.' });
  }
  const meta = parsed.data;
  const input = proto.graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
  const output = proto.graph?.output?.[0]?.type?.tensorType?.shape?.dim ?? [];
  const size = Number(input[1]?.dimValue ?? 0);
  const units = Number(output.at(-1)?.dimValue ?? 0);
  if (input.length !== 4 || size <= 0 || Number(input[2]?.dimValue ?? 0) !== size || Number(input[3]?.dimValue ?? 0) !== 3) throw new WeightsError(`${file}: its input is not [N, size, size, 3] with a fixed size.`);
  if (units !== meta['tl.labels'].length) throw new WeightsError(`${file}: the model has ${units} outputs but its metadata names ${meta['tl.labels'].length} labels.`);
  const thresholds = meta['tl.thresholds'] ?? null;
  if (thresholds && thresholds.length !== units) throw new WeightsError(`${file}: the model has ${units} outputs but its metadata gives ${thresholds.length} thresholds.`);
  return {
    name: `${meta['tl.model']} (from ${file})`,
    classes: meta['tl.labels'],
    preprocess: meta['tl.preprocess'],
    inputSize: size,
    resize: meta['tl.resize'] ?? null,
    thresholds,
    digest: createHash('sha256').update(bytes).digest('hex'),
    metadata: props,
    open: (options = {}) => OnnxSession.open(bytes, options),
  };
}

/**
 * The model's probabilities for `items`, a batch at a time, decoded with the model's input size and resize mode
 * (`resize` overrides it); images that fail to decode are left out and listed in `skipped`.
 */
export async function* classifyWithOnnxFile(model: OnnxClassifier, items: ImageItem[], options: { batchSize: number; resize?: ResizeMode; maxPixels?: number; skipped: SkippedFile[] }): AsyncGenerator<{ items: ImageItem[]; outputs: Float32Array }> {
  const resize = options.resize ?? model.resize ?? undefined;
  const source = new ImageSource(items, { size: model.inputSize, ...(resize ? { resize } : {}), ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}), cacheBytes: 0 });
  const session = await model.open();
  try {
    for await (const batch of source.batches(items, { batchSize: options.batchSize })) {
      const n = batch.items.length;
      const [outputs] = await session.run([{ data: preprocessPixels(batch.pixels, model.preprocess), shape: [n, model.inputSize, model.inputSize, 3] }]);
      yield { items: batch.items, outputs: outputs! };
    }
  } finally {
    await session.close();
    options.skipped.push(...source.skipped);
  }
}
