// Backbones for fine-tuning: a registry model, a tfjs LayersModel folder or URL, or a run folder tl wrote.
import { existsSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { ModelNotFoundError, UsageError, WeightsError } from '../errors.js';
import { buildVariant, resolveVariant, type PreprocessMode } from '../registry/index.js';
import { customLayers } from '../registry/layers.js';
import { storeRoot } from '../store/index.js';
import { download, type DownloadProgress } from './download.js';
import { readKerasH5 } from './h5.js';
import { registryModelOf, requireHdf5 } from './import.js';
import { assignKerasFile } from './keras.js';
import { loadPretrained } from './index.js';
import { groupBytes, loadLayersModelFromFolder, MAX_MODEL_JSON_BYTES, readModelJson, shardPath } from './tfjs.js';

/** A backbone (no classifier) and what its inputs expect. */
export interface Backbone {
  model: LayersModel;
  /** Registry name, or the path/URL it came from. */
  name: string;
  preprocess: PreprocessMode;
  inputSize: number;
  /** The registry's default freeze point for this backbone, when it has one. */
  fineTuneFrom?: { layers: number; why: string };
  /**
   * With `keepHead`, a run tl wrote keeps its classifier: the whole model (backbone layers first, then the head's)
   * and its classes. The caller owns it; `model` is its backbone part.
   */
  withHead?: { model: LayersModel; classes: string[] };
}

export interface BackboneOptions {
  weights: 'pretrained' | 'random';
  inputSize?: number;
  preprocess?: PreprocessMode;
  seed?: number;
  store?: string;
  onDownload?: (p: DownloadProgress) => void;
  /** Aborted on SIGINT/SIGTERM: a download in progress stops at once. */
  signal?: AbortSignal;
  /** Keep the classifier of a run tl wrote (see Backbone.withHead). */
  keepHead?: boolean;
  /** The registry architecture of a Keras `.h5` file given as the model (when neither its name nor its config says). */
  arch?: string;
}

/** The metadata tl writes into a run's model.json. */
interface TlMetadata {
  model: string;
  preprocess: PreprocessMode;
  inputSize: number;
  classes?: string[];
}

/** The model.json a path points at: a run folder (model/model.json), a model folder, or the file itself. */
export function modelJsonAt(path: string): string | null {
  const full = resolve(path);
  if (!existsSync(full)) return null;
  if (statSync(full).isFile()) return full;
  for (const candidate of [join(full, 'model', 'model.json'), join(full, 'model.json')]) if (existsSync(candidate)) return candidate;
  return null;
}

/** Refuses a URL that leaves the origin and folder of the model.json at `modelJsonUrl` (a redirect hop included). */
function confinedTo(modelJsonUrl: string): (url: string) => void {
  const base = new URL(modelJsonUrl);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  return (url) => {
    const target = new URL(url);
    if (target.origin !== base.origin || !target.pathname.startsWith(folder)) {
      throw new WeightsError(`${url} is outside ${base.origin}${folder}, where ${modelJsonUrl} keeps its files (a redirect there is refused too).`, { suggestion: 'A model served over HTTP must keep model.json and its shards in one folder of one server.' });
    }
  };
}

/**
 * The URL of a shard listed in the model.json at `modelJsonUrl`: resolved as a browser would (percent-escapes and
 * backslashes included), and refused unless it has the model.json's origin and lies under its folder.
 */
export function shardUrl(modelJsonUrl: string, path: string): string {
  const base = new URL(modelJsonUrl);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  let target: URL;
  try {
    target = new URL(path, base);
  } catch {
    throw new WeightsError(`Shard path '${path}' in ${modelJsonUrl} is not a valid relative URL; refused.`);
  }
  if (target.origin !== base.origin || !target.pathname.startsWith(folder) || target.pathname === folder || path.includes('\\')) {
    throw new WeightsError(`Shard path '${path}' in ${modelJsonUrl} resolves to ${target.href}, outside ${base.origin}${folder}; refused.`, { suggestion: 'A model served over HTTP must keep its shards beside model.json.' });
  }
  return target.href;
}

/** Limits of a model fetched from a URL: $TL_MAX_MODEL_BYTES (default 2 GiB of weights) and $TL_MAX_MODEL_SHARDS (1000). */
export function urlModelLimits(env: NodeJS.ProcessEnv = process.env): { bytes: number; shards: number } {
  const read = (name: string, fallback: number) => {
    const v = Number(env[name]);
    return Number.isInteger(v) && v > 0 ? v : fallback;
  };
  return { bytes: read('TL_MAX_MODEL_BYTES', 2 * 2 ** 30), shards: read('TL_MAX_MODEL_SHARDS', 1000) };
}

/**
 * Downloads a LayersModel (model.json and its shards) from a URL into the store; returns the local model.json. Every
 * request (redirects included) stays in the model.json's folder; the weights' total size and shard count are checked
 * against the limits before any shard is fetched, and the bytes received count against that total.
 */
export async function fetchLayersModel(url: string, store: string, onDownload?: (p: DownloadProgress) => void, signal?: AbortSignal): Promise<string> {
  const folder = join(store, 'weights', 'url', createHash('sha256').update(url).digest('hex').slice(0, 16));
  const local = join(folder, 'model.json');
  const limits = urlModelLimits();
  const allowUrl = confinedTo(url);
  let requests = 0;
  let maxRequests = 2 * (1 + MAX_HOPS);
  const onRequest = (at: string) => {
    if (++requests > maxRequests) throw new WeightsError(`Refused ${at}: the model at ${url} needed more than ${maxRequests} requests.`);
  };
  const common = { hash: null, allowUrl, onRequest, ...(onDownload ? { onProgress: onDownload } : {}), ...(signal ? { signal } : {}) };
  await download(url, local, { ...common, maxBytes: MAX_MODEL_JSON_BYTES });
  const json = await readModelJson(local);
  // Every shard is checked before any is fetched: its URL stays beside model.json, its file inside the folder.
  const shards = json.weightsManifest.flatMap((g) => g.paths.map((path) => ({ url: shardUrl(url, path), target: shardPath(folder, path), maxBytes: groupBytes(g) })));
  const total = json.weightsManifest.reduce((n, g) => n + groupBytes(g), 0);
  const suggestion = 'Raise TL_MAX_MODEL_BYTES / TL_MAX_MODEL_SHARDS if the model is genuine.';
  if (total > limits.bytes) throw new WeightsError(`Refused ${url}: its manifest describes ${total} bytes of weights; at most ${limits.bytes} (TL_MAX_MODEL_BYTES) are fetched.`, { suggestion });
  if (shards.length > limits.shards) throw new WeightsError(`Refused ${url}: its manifest lists ${shards.length} shards; at most ${limits.shards} (TL_MAX_MODEL_SHARDS) are fetched.`, { suggestion });
  maxRequests = (1 + shards.length) * (1 + MAX_HOPS);
  let left = total;
  for (const shard of shards) {
    await download(shard.url, shard.target, { ...common, maxBytes: Math.min(shard.maxBytes, left) });
    left -= statSync(shard.target).size;
  }
  return local;
}

/** Redirect hops a request may take (download follows at most 5). */
const MAX_HOPS = 5;

/** Refuses an --input-size that a model with a fixed input size cannot take (TensorFlow.js would fail deep inside). */
function fixedInputAllows(spec: string, shape: (number | null)[], wanted: number | undefined): void {
  const [, h, w] = shape;
  if (wanted === undefined || (h === null && w === null)) return;
  if (h !== wanted || w !== wanted) throw new UsageError(`--input-size ${wanted}: ${spec} takes inputs of ${h ?? 'any'} x ${w ?? 'any'} pixels only (its input layer is fixed at [${shape.map((d) => d ?? 'null').join(', ')}]).`, { suggestion: `Leave out --input-size, or give --input-size ${h ?? w}.` });
}

/** The layer feeding tl's head, or the last layer with a 4-D output for other models. */
function backboneOutput(model: LayersModel): SymbolicTensor {
  const head = model.layers.find((l) => l.name === 'head_pool');
  if (head) return head.inboundNodes[0]!.inputTensors[0]!;
  for (let i = model.layers.length - 1; i >= 0; i--) {
    const out = model.layers[i]!.output as SymbolicTensor | SymbolicTensor[];
    if (!Array.isArray(out) && out.shape.length === 4) return out;
  }
  throw new WeightsError(`Model '${model.name}' has no layer with a 4-D (image feature map) output to fine-tune from.`);
}

/**
 * A Keras `.h5` file (weights only, or a full model) for a registry architecture: the architecture from `--arch`, the
 * file name Keras publishes, or a Keras application's model name in the file's config; its weights by layer name.
 */
async function kerasFileBackbone(tf: Tf, file: string, options: BackboneOptions): Promise<Backbone> {
  await requireHdf5(file);
  // Its names and config only: the weights are read once, by assignKerasFile, after their shapes are checked.
  const h5 = await readKerasH5(file, { select: () => false });
  const arch = options.arch ?? registryModelOf(file, h5.modelConfig);
  if (arch === null && h5.modelConfig !== null) return kerasConfigBackbone(tf, file, h5.modelConfig, options);
  if (arch === null) {
    throw new UsageError(`${file}: tl cannot tell which architecture its weights are for (a weights-only file).`, { suggestion: 'Pass --arch NAME with the registry model it was saved from (see `tl models`).' });
  }
  const { variant } = resolveVariant(arch);
  const model = buildVariant(tf, arch, { includeTop: false, ...(options.inputSize ? { inputSize: options.inputSize } : {}) });
  try {
    await assignKerasFile(tf, model, file);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { model, name: `${arch} (from ${file})`, preprocess: options.preprocess ?? variant.preprocess, inputSize: options.inputSize ?? variant.inputSize, ...(variant.fineTuneFrom ? { fineTuneFrom: variant.fineTuneFrom } : {}) };
}

/**
 * A full Keras model that is not a registry architecture: built by TensorFlow.js from the file's model config, its
 * weights assigned by layer name, cut after its last image feature map (like a LayersModel folder).
 */
async function kerasConfigBackbone(tf: Tf, file: string, modelConfig: unknown, options: BackboneOptions): Promise<Backbone> {
  if (options.preprocess === undefined) throw new UsageError(`${file} holds a model tl does not know, so its preprocessing is unknown; pass --preprocess caffe|tf|torch|raw01|none.`);
  customLayers(tf);
  let loaded: LayersModel;
  try {
    loaded = (await tf.models.modelFromJSON({ modelTopology: modelConfig } as Parameters<Tf['models']['modelFromJSON']>[0])) as LayersModel;
  } catch (err) {
    throw new WeightsError(`${file}: TensorFlow.js cannot build its model config (${(err as Error).message.split('\n')[0]}).`, { suggestion: 'If it is a registry architecture, pass --arch NAME.' });
  }
  try {
    await assignKerasFile(tf, loaded, file);
  } catch (err) {
    loaded.dispose();
    throw err;
  }
  try {
    fixedInputAllows(file, loaded.inputs[0]!.shape, options.inputSize);
  } catch (err) {
    loaded.dispose();
    throw err;
  }
  const backbone = tf.model({ inputs: loaded.inputs, outputs: backboneOutput(loaded), name: `${loaded.name}_backbone` });
  const kept = new Set(backbone.layers.map((l) => l.name));
  for (const layer of loaded.layers) if (!kept.has(layer.name)) layer.dispose();
  const inputSize = (loaded.inputs[0]!.shape[1] as number | null) ?? options.inputSize ?? 224;
  return { model: backbone, name: `${loaded.name} (from ${file})`, preprocess: options.preprocess, inputSize };
}

/** Resolves `--model`: a registry name, an http(s) URL of a model.json, or a local path. */
export async function loadBackbone(tf: Tf, spec: string, options: BackboneOptions): Promise<Backbone> {
  const store = options.store ?? storeRoot();
  if (/\.h5$/i.test(spec)) return kerasFileBackbone(tf, spec, options);
  const isUrl = /^https?:\/\//.test(spec);
  const localJson = isUrl ? null : modelJsonAt(spec);
  if (!isUrl && localJson === null) {
    if (/[/\\]/.test(spec) || spec.endsWith('.json')) throw new ModelNotFoundError(`No model at ${spec}: expected a tl run folder, a folder with model.json, or a model.json file.`);
    const p = await loadPretrained(tf, spec, { includeTop: false, weights: options.weights, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.seed !== undefined ? { seed: options.seed } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}), ...(options.signal ? { signal: options.signal } : {}), store });
    return { model: p.model, name: p.variant.name, preprocess: options.preprocess ?? p.variant.preprocess, inputSize: options.inputSize ?? p.variant.inputSize, ...(p.variant.fineTuneFrom ? { fineTuneFrom: p.variant.fineTuneFrom } : {}) };
  }
  const modelJson = isUrl ? await fetchLayersModel(spec, store, options.onDownload, options.signal) : localJson!;
  const meta = (await readModelJson(modelJson)).userDefinedMetadata?.['tl'] as TlMetadata | undefined;
  const loaded = await loadLayersModelFromFolder(tf, modelJson);
  const preprocess = options.preprocess ?? meta?.preprocess;
  if (preprocess === undefined) {
    loaded.dispose();
    throw new UsageError(`${spec} is not a model tl wrote, so its preprocessing is unknown; pass --preprocess caffe|tf|torch|raw01|none.`);
  }
  const inputShape = loaded.inputs[0]!.shape;
  try {
    fixedInputAllows(spec, inputShape, options.inputSize);
  } catch (err) {
    loaded.dispose();
    throw err;
  }
  const inputSize = meta?.inputSize ?? (inputShape[1] as number | null) ?? options.inputSize ?? 224;
  const output = backboneOutput(loaded);
  const backbone = tf.model({ inputs: loaded.inputs, outputs: output, name: `${loaded.name}_backbone` });
  const name = meta?.model ? `${meta.model} (from ${isUrl ? spec : dirname(dirname(modelJson))})` : spec;
  // A run of a registry model fine-tunes from that model's default point too.
  const fineTuneFrom = meta?.model ? resolveVariant(meta.model).variant.fineTuneFrom : undefined;
  const kept = new Set(backbone.layers.map((l) => l.name));
  const headLayers = loaded.layers.filter((l) => !kept.has(l.name));
  // A classifier tl wrote: the backbone's layers, then the head's, so Keras indices still count the backbone.
  const ordered = loaded.layers.slice(0, kept.size).every((l) => kept.has(l.name));
  if (options.keepHead && meta?.classes && headLayers.length > 0 && ordered) {
    return { model: backbone, name, preprocess, inputSize, ...(fineTuneFrom ? { fineTuneFrom } : {}), withHead: { model: loaded, classes: meta.classes } };
  }
  // Layers past the backbone (the old classifier) are dropped: free their weights now.
  for (const layer of headLayers) layer.dispose();
  return { model: backbone, name, preprocess, inputSize, ...(fineTuneFrom ? { fineTuneFrom } : {}) };
}
