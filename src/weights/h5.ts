// Keras HDF5 weight files (weights-only or full model), read with h5wasm.
import { WeightsError } from '../errors.js';

/** One weight as stored: its shape and float32 values. */
export interface StoredWeight {
  shape: number[];
  data: Float32Array;
}

export interface KerasH5 {
  /** The weights read (those `select` kept), grouped by the layer that owns them (nested models flattened), then by short name. */
  layers: Map<string, Map<string, StoredWeight>>;
  /** Every weight's shape, read or not, grouped the same way. */
  shapes: Map<string, Map<string, number[]>>;
  /** Layer names in the file's order. */
  layerNames: string[];
  /** The `model_config` JSON of a full-model file, or null for weights-only files. */
  modelConfig: unknown;
  kerasVersion: string | null;
  /**
   * Keras 3's weights format (`save_weights` to `.weights.h5`): a layer's weights have no names, only their order
   * (`layers/<layer>/vars/0`, `1`, ...), which is the layer's own; they are named `#0`, `#1`, ... here.
   */
  positional: boolean;
}

/** The name a positional (Keras 3 weights format) weight gets: `#` and its index. */
export const positionalName = (index: number) => `#${index}`;

interface H5Attr {
  value: unknown;
}
interface H5Node {
  attrs: Record<string, H5Attr>;
  keys?(): string[];
  get(path: string): H5Node | null;
  shape?: number[];
  value?: unknown;
}

/** A string-list attribute, joining Keras's split form (`name0`, `name1`, ...) used when it outgrew 64 KiB. */
function stringList(node: H5Node, name: string): string[] | null {
  const toList = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : v == null ? [] : ArrayBuffer.isView(v) ? [] : [String(v)]);
  if (name in node.attrs) return toList(node.attrs[name]!.value);
  if (!(`${name}0` in node.attrs)) return null;
  const out: string[] = [];
  for (let i = 0; `${name}${i}` in node.attrs; i++) out.push(...toList(node.attrs[`${name}${i}`]!.value));
  return out;
}

function toFloat32(value: unknown, where: string): Float32Array {
  if (value instanceof Float32Array) return value;
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Float32Array.from(value as unknown as ArrayLike<number>);
  if (typeof value === 'number') return Float32Array.of(value);
  throw new WeightsError(`Dataset ${where} does not hold numbers.`);
}

/** The most values one dataset may hold before it is read (1 GiB of float32; VGG's largest layer has 103 M). */
export const MAX_DATASET_ELEMENTS = 2 ** 28;

export interface ReadH5Options {
  /**
   * Called with each weight's owner, short name and shape before its values are read: true reads it, false skips it,
   * and a throw refuses the file (a shape the model cannot take is refused before its bytes are read). Default: all.
   */
  select?: (owner: string, weight: string, shape: number[]) => boolean;
}

/** Reads a Keras .h5 file: its layer names and config, every weight's shape, and the values of the weights `select` keeps. */
export async function readKerasH5(path: string, options: ReadH5Options = {}): Promise<KerasH5> {
  try {
    return await readH5(path, options);
  } catch (err) {
    if (err instanceof WeightsError) throw err;
    throw new WeightsError(`${path} cannot be read as a Keras weight file (damaged or truncated?): ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
}

async function readH5(path: string, options: ReadH5Options): Promise<KerasH5> {
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  let file: InstanceType<typeof h5wasm.File>;
  try {
    file = new h5wasm.File(path, 'r');
  } catch (err) {
    throw new WeightsError(`${path} is not a readable HDF5 file (damaged or truncated?): ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  try {
    const rootFile = file as unknown as H5Node;
    const root = (rootFile.keys?.().includes('model_weights') ? rootFile.get('model_weights') : rootFile) as H5Node;
    const layers = new Map<string, Map<string, StoredWeight>>();
    const shapes = new Map<string, Map<string, number[]>>();
    /** Checks one dataset's shape, offers it to `select` and reads it when kept. */
    const take = (owner: string, weight: string, dataset: H5Node, where: string) => {
      const shape = [...dataset.shape!];
      const elements = shape.reduce((a, b) => a * b, 1);
      if (shape.some((d) => !Number.isInteger(d) || d < 0) || elements > MAX_DATASET_ELEMENTS) {
        throw new WeightsError(`${path}: weight '${where}' has shape [${shape.join(', ')}] (${elements} values); no layer of the models tl reads has more than ${MAX_DATASET_ELEMENTS}.`);
      }
      if (!shapes.has(owner)) shapes.set(owner, new Map());
      shapes.get(owner)!.set(weight, shape);
      if (!(options.select?.(owner, weight, shape) ?? true)) return;
      if (!layers.has(owner)) layers.set(owner, new Map());
      layers.get(owner)!.set(weight, { shape, data: toFloat32(dataset.value, where) });
    };
    const layerNames = stringList(root, 'layer_names');
    if (layerNames === null && rootFile.keys?.().includes('layers')) {
      // Keras 3's weights format: layers/<layer>/vars/<index>, in each layer's own weight order.
      const group = rootFile.get('layers')!;
      const names = group.keys?.() ?? [];
      for (const layerName of names) {
        const vars = (group.get(layerName)?.keys?.() ?? []).includes('vars') ? group.get(`${layerName}/vars`) : null;
        const indices = (vars?.keys?.() ?? []).filter((k) => /^\d+$/.test(k)).map(Number).sort((a, b) => a - b);
        indices.forEach((index, position) => {
          if (index !== position) throw new WeightsError(`${path}: layer '${layerName}' has weights ${indices.join(', ')}; Keras numbers them from 0 without gaps.`);
          const dataset = vars!.get(String(index));
          if (dataset === null || dataset.shape === undefined) throw new WeightsError(`${path}: weight 'layers/${layerName}/vars/${index}' is not a dataset.`);
          take(layerName, positionalName(index), dataset, `layers/${layerName}/vars/${index}`);
        });
      }
      return { layers, shapes, layerNames: names, modelConfig: null, kerasVersion: null, positional: true };
    }
    if (layerNames === null) throw new WeightsError(`${path} is not a Keras weights file (no layer_names attribute, and not Keras 3's layers/<name>/vars layout).`);
    for (const layerName of layerNames) {
      const group = root.get(layerName);
      if (group === null) throw new WeightsError(`${path}: layer '${layerName}' is listed but has no group.`);
      for (const weightName of stringList(group, 'weight_names') ?? []) {
        const dataset = group.get(weightName);
        if (dataset === null || dataset.shape === undefined) throw new WeightsError(`${path}: weight '${layerName}/${weightName}' is listed but missing.`);
        const parts = weightName.replace(/:\d+$/, '').split('/');
        const weight = parts[parts.length - 1] as string;
        // A nested model stores its layers' weights as <inner layer>/<weight>: flatten to the inner layer.
        const owner = parts.length >= 2 ? (parts[parts.length - 2] as string) : layerName;
        take(owner, weight, dataset, `${layerName}/${weightName}`);
      }
    }
    const config = rootFile.attrs['model_config']?.value;
    const version = rootFile.attrs['keras_version']?.value ?? root.attrs['keras_version']?.value;
    return {
      layers,
      shapes,
      layerNames,
      modelConfig: typeof config === 'string' ? (JSON.parse(config) as unknown) : null,
      kerasVersion: version == null ? null : String(version),
      positional: false,
    };
  } finally {
    file.close();
  }
}
