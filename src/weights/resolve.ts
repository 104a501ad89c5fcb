// `--model` for every command, resolved in one place: what the spec names (a registry model, a LayersModel folder or
// run folder, a model.json URL, a Keras .h5 file), the model loaded from it, and its input size, preprocessing and
// labels with one order of precedence.
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { LayersModel, Tf } from '../backend/index.js';
import { ModelNotFoundError, UsageError, WeightsError } from '../errors.js';
import { buildVariant, resolveVariant, type PreprocessMode } from '../registry/index.js';
import { customLayers } from '../registry/layers.js';
import { readTlEntry, type TlEntry } from '../registry/metadata.js';
import { storeRoot } from '../store/index.js';
import type { DownloadProgress } from './download.js';
import { readKerasH5 } from './h5.js';
import { registryModelOf, requireHdf5 } from './import.js';
import { loadPretrained } from './index.js';
import { assignKerasFile } from './keras.js';
import { loadLayersModelFromFolder, readModelJson } from './tfjs.js';
import { fetchLayersModel } from './url.js';

/** What a `--model` spec names, before anything is loaded. */
export type ModelSource =
  | { kind: 'registry'; name: string }
  | { kind: 'url'; url: string }
  | { kind: 'folder'; modelJson: string }
  | { kind: 'h5'; file: string };

/** The model.json a path points at: a run folder (model/model.json), a model folder, or the file itself. */
export function modelJsonAt(path: string): string | null {
  const full = resolve(path);
  if (!existsSync(full)) return null;
  if (statSync(full).isFile()) return full;
  for (const candidate of [join(full, 'model', 'model.json'), join(full, 'model.json')]) if (existsSync(candidate)) return candidate;
  return null;
}

/** What `spec` names; a path that holds no model and an unknown registry name are errors saying what was expected. */
export function modelSource(spec: string): ModelSource {
  if (/\.h5$/i.test(spec)) return { kind: 'h5', file: spec };
  if (/^https?:\/\//.test(spec)) return { kind: 'url', url: spec };
  const local = modelJsonAt(spec);
  if (local !== null) return { kind: 'folder', modelJson: local };
  if (/[/\\]/.test(spec) || spec.endsWith('.json')) throw new ModelNotFoundError(`No model at ${spec}: expected a tl run folder, a folder with model.json, or a model.json file.`);
  resolveVariant(spec);
  return { kind: 'registry', name: spec };
}

/** What a command wants of the model. */
export interface ModelWant {
  /** Registry models: with the classifier they were published with (ImageNet's, nsfwjs's) or without. */
  top: boolean;
  weights?: 'pretrained' | 'random';
  inputSize?: number;
  /** Overrides the model's own; needed for models tl did not write. */
  preprocess?: PreprocessMode;
  seed?: number;
  store?: string;
  onDownload?: (p: DownloadProgress) => void;
  /** Aborted on SIGINT/SIGTERM: a download in progress stops at once. */
  signal?: AbortSignal;
  /** The registry architecture of a Keras `.h5` file (when neither its name nor its config says). */
  arch?: string;
}

export interface ResolvedModel {
  source: ModelSource;
  model: LayersModel;
  /** Registry name, or the model's name with the path or URL it came from. */
  name: string;
  preprocess: PreprocessMode;
  inputSize: number;
  /** Built without a classifier (a registry model or .h5 architecture without its top): the model is a backbone. */
  headless: boolean;
  /** Labels of the outputs, where the model carries them (a run's classes, a registry top's labels). */
  classes: string[] | null;
  /** The registry's default freeze point for the model's architecture, when it has one. */
  fineTuneFrom?: { layers: number; why: string };
  /** The model.json's userDefinedMetadata (folders and URLs), and its `tl` entry, checked. */
  userDefinedMetadata?: Record<string, unknown>;
  tl: TlEntry | null;
}

const unknownPreprocess = (what: string) => new UsageError(`${what} is not a model tl wrote, so its preprocessing is unknown; pass --preprocess caffe|tf|torch|raw01|none.`);

/** Refuses an --input-size that a model with a fixed input size cannot take (TensorFlow.js would fail deep inside). */
function fixedInputAllows(spec: string, shape: (number | null)[], wanted: number | undefined): void {
  const [, h, w] = shape;
  if (wanted === undefined || (h === null && w === null)) return;
  if (h !== wanted || w !== wanted) throw new UsageError(`--input-size ${wanted}: ${spec} takes inputs of ${h ?? 'any'} x ${w ?? 'any'} pixels only (its input layer is fixed at [${shape.map((d) => d ?? 'null').join(', ')}]).`, { suggestion: `Leave out --input-size, or give --input-size ${h ?? w}.` });
}

/** Runs `check` on a model just loaded; on failure the model is disposed before the error goes on. */
function disposeOnError<T>(model: LayersModel, check: () => T): T {
  try {
    return check();
  } catch (err) {
    model.dispose();
    throw err;
  }
}

async function registryModel(tf: Tf, name: string, want: ModelWant, store: string): Promise<ResolvedModel> {
  const p = await loadPretrained(tf, name, { includeTop: want.top, weights: want.weights ?? 'pretrained', ...(want.inputSize ? { inputSize: want.inputSize } : {}), ...(want.seed !== undefined ? { seed: want.seed } : {}), ...(want.onDownload ? { onDownload: want.onDownload } : {}), ...(want.signal ? { signal: want.signal } : {}), store });
  const v = p.variant;
  const classes = want.top && v.topLabels ? [...v.topLabels] : null;
  return { source: { kind: 'registry', name }, model: p.model, name: v.name, preprocess: want.preprocess ?? v.preprocess, inputSize: want.inputSize ?? v.inputSize, headless: !want.top, classes, ...(v.fineTuneFrom ? { fineTuneFrom: v.fineTuneFrom } : {}), tl: null };
}

/** A LayersModel from a folder or URL: tl's metadata (checked) gives its preprocessing, input size, labels and recipe. */
async function layersModel(tf: Tf, spec: string, source: Extract<ModelSource, { kind: 'folder' | 'url' }>, want: ModelWant, store: string): Promise<ResolvedModel> {
  const modelJson = source.kind === 'url' ? await fetchLayersModel(source.url, store, want.onDownload, want.signal) : source.modelJson;
  const userDefinedMetadata = (await readModelJson(modelJson)).userDefinedMetadata;
  const tl = readTlEntry(userDefinedMetadata, modelJson);
  const preprocess = want.preprocess ?? tl?.preprocess;
  if (preprocess === undefined) throw unknownPreprocess(spec);
  const model = await loadLayersModelFromFolder(tf, modelJson);
  const inputShape = model.inputs[0]!.shape;
  disposeOnError(model, () => fixedInputAllows(spec, inputShape, want.inputSize));
  const inputSize = tl?.inputSize ?? (inputShape[1] as number | null) ?? want.inputSize ?? 224;
  const name = tl ? `${tl.model} (from ${source.kind === 'url' ? spec : dirname(dirname(modelJson))})` : spec;
  // A run of a registry model fine-tunes from that model's default point too.
  const fineTuneFrom = tl ? resolveVariant(tl.model).variant.fineTuneFrom : undefined;
  return { source, model, name, preprocess, inputSize, headless: false, classes: tl?.classes ?? null, ...(fineTuneFrom ? { fineTuneFrom } : {}), ...(userDefinedMetadata ? { userDefinedMetadata } : {}), tl };
}

/**
 * A Keras `.h5` file: for a registry architecture (from `--arch`, the file name Keras publishes, or a Keras
 * application's name in its config) that architecture without its top, its weights by layer name; otherwise the model
 * TensorFlow.js builds from the file's config, with its weights.
 */
async function kerasFileModel(tf: Tf, file: string, want: ModelWant): Promise<ResolvedModel> {
  await requireHdf5(file);
  // Its names and config only: the weights are read once, by assignKerasFile, after their shapes are checked.
  const h5 = await readKerasH5(file, { select: () => false });
  const arch = want.arch ?? registryModelOf(file, h5.modelConfig);
  const source: ModelSource = { kind: 'h5', file };
  if (arch === null && h5.modelConfig === null) {
    throw new UsageError(`${file}: tl cannot tell which architecture its weights are for (a weights-only file).`, { suggestion: 'Pass --arch NAME with the registry model it was saved from (see `tl models`).' });
  }
  if (arch !== null) {
    const { variant } = resolveVariant(arch);
    // The size the file's model was saved at, where its config says (Keras 2's batch_input_shape, Keras 3's batch_shape).
    const inputSize = want.inputSize ?? savedInputSize(h5.modelConfig) ?? variant.inputSize;
    const model = buildVariant(tf, arch, { includeTop: false, inputSize });
    await assignKerasFile(tf, model, file).catch((err: unknown) => disposeOnError(model, () => { throw err; }));
    return { source, model, name: `${arch} (from ${file})`, preprocess: want.preprocess ?? variant.preprocess, inputSize, headless: true, classes: null, ...(variant.fineTuneFrom ? { fineTuneFrom: variant.fineTuneFrom } : {}), tl: null };
  }
  if (want.preprocess === undefined) throw new UsageError(`${file} holds a model tl does not know, so its preprocessing is unknown; pass --preprocess caffe|tf|torch|raw01|none.`);
  customLayers(tf);
  let model: LayersModel;
  try {
    model = (await tf.models.modelFromJSON({ modelTopology: h5.modelConfig } as Parameters<Tf['models']['modelFromJSON']>[0])) as LayersModel;
  } catch (err) {
    throw new WeightsError(`${file}: TensorFlow.js cannot build its model config (${(err as Error).message.split('\n')[0]}).`, { suggestion: 'If it is a registry architecture, pass --arch NAME.' });
  }
  await assignKerasFile(tf, model, file).catch((err: unknown) => disposeOnError(model, () => { throw err; }));
  disposeOnError(model, () => fixedInputAllows(file, model.inputs[0]!.shape, want.inputSize));
  const inputSize = (model.inputs[0]!.shape[1] as number | null) ?? want.inputSize ?? 224;
  return { source, model, name: `${model.name} (from ${file})`, preprocess: want.preprocess, inputSize, headless: false, classes: null, tl: null };
}

/** The square input size of a Keras model config's first input layer, or null when it has none (or a free size). */
function savedInputSize(modelConfig: unknown): number | null {
  const layers = (modelConfig as { config?: { layers?: { class_name?: string; config?: { batch_input_shape?: unknown; batch_shape?: unknown } }[] } } | null)?.config?.layers;
  const input = layers?.find((l) => l.class_name === 'InputLayer')?.config;
  const shape = input?.batch_shape ?? input?.batch_input_shape;
  if (!Array.isArray(shape) || shape.length !== 4) return null;
  const [, h, w] = shape as unknown[];
  return typeof h === 'number' && h === w && Number.isInteger(h) && h >= 32 ? h : null;
}

/** Resolves and loads `spec` for what a command wants of it. The caller owns the model. */
export async function resolveModel(tf: Tf, spec: string, want: ModelWant): Promise<ResolvedModel> {
  const source = modelSource(spec);
  const store = want.store ?? storeRoot();
  switch (source.kind) {
    case 'registry':
      return registryModel(tf, source.name, want, store);
    case 'h5':
      return kerasFileModel(tf, source.file, want);
    default:
      return layersModel(tf, spec, source, want, store);
  }
}
