// Freezing: which layers train, BatchNormalization behaviour, and the cut at the freeze boundary.
import type { Layer, LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { UsageError } from '../errors.js';

/** `N` (layers 0..N-1 frozen), a layer name (frozen up to and including it), or `all` (the whole backbone). */
export type FreezeSpec = number | string;

/** Number of leading backbone layers a freeze spec freezes (Keras indices; index 0 is the input layer). */
export function resolveFreeze(backbone: LayersModel, spec: FreezeSpec, modelName: string): number {
  const count = backbone.layers.length;
  if (spec === 'all') return count;
  if (typeof spec === 'string' && /^[-+]\d+$/.test(spec.trim())) throw new UsageError(`--freeze ${spec}: a layer count is a whole number from 0 to ${count} (${modelName} has ${count} layers), or a layer name, or 'all'.`);
  if (typeof spec === 'number' || /^\d+$/.test(spec)) {
    const n = Number(spec);
    if (n < 0 || n > count) throw new UsageError(`--freeze ${n} is out of range for ${modelName}, which has ${count} layers (0..${count}, or 'all').`);
    return n;
  }
  const index = backbone.layers.findIndex((l) => l.name === spec);
  if (index < 0) {
    const near = backbone.layers.map((l) => l.name).filter((n) => n.startsWith(spec.slice(0, 4))).slice(0, 8);
    throw new UsageError(`--freeze ${spec}: no layer of that name in ${modelName}.${near.length ? ` Similar: ${near.join(', ')}.` : ''}`, { suggestion: `Run \`tl models info ${modelName}\` to list its layers.` });
  }
  return index + 1;
}

export const BN_MODES = ['frozen', 'train'] as const;
export type BnMode = (typeof BN_MODES)[number];

const inferencePinned = new WeakSet<Layer>();

/**
 * Porting note: Keras runs a BatchNormalization layer whose `trainable` is False in inference mode (moving
 * statistics used, never updated). tfjs's BatchNormalization ignores `trainable` and updates its statistics
 * whenever it is called with training=true, so tl pins such layers to inference mode here.
 */
function pinInferenceMode(layer: Layer): void {
  if (inferencePinned.has(layer)) return;
  const call = layer.call.bind(layer);
  // Read at call time: a two-phase run makes some of these layers trainable again for its second phase.
  layer.call = (inputs, kwargs) => call(inputs, layer.trainable ? kwargs : { ...kwargs, training: false });
  inferencePinned.add(layer);
}

/**
 * Sets `trainable` on every layer of `model` in one place: frozen layers (and, with `bn: 'frozen'`, every
 * BatchNormalization layer) do not train, and BatchNormalization layers that do not train run in inference mode.
 */
export function applyTrainability(model: LayersModel, frozen: ReadonlySet<string>, bn: BnMode): void {
  for (const layer of model.layers) {
    const isBn = layer.getClassName() === 'BatchNormalization';
    layer.trainable = !frozen.has(layer.name) && !(isBn && bn === 'frozen');
    if (isBn && !layer.trainable) pinInferenceMode(layer);
  }
}

/** The model split at the freeze boundary. */
export interface Cut {
  /** Image -> every tensor that crosses the boundary; null when nothing but the input is frozen. */
  frozen: LayersModel | null;
  /** Boundary tensors -> predictions; shares its layers (and weights) with the full model. */
  tail: LayersModel;
  /** Shapes (without batch) of the tail's inputs, in order. */
  boundaryShapes: number[][];
  /** Names of the layers whose outputs cross the boundary. */
  boundaryLayers: string[];
}

/**
 * Cuts `full` so that the layers in `frozen` run as one inference-only model and the rest as a tail whose inputs
 * are every tensor that crosses the boundary (ResNet's shortcuts cross it too).
 */
export function cutModel(tf: Tf, full: LayersModel, frozen: ReadonlySet<string>): Cut {
  const isFrozen = (layer: Layer) => frozen.has(layer.name) || layer.getClassName() === 'InputLayer';
  const crossing: SymbolicTensor[] = [];
  const seen = new Set<number>();
  for (const layer of full.layers) {
    if (isFrozen(layer)) continue;
    for (const t of layer.inboundNodes[0]?.inputTensors ?? []) {
      if (isFrozen(t.sourceLayer as Layer) && !seen.has(t.id)) {
        seen.add(t.id);
        crossing.push(t);
      }
    }
  }
  const inputIds = new Set(full.inputs.map((t) => t.id));
  if (crossing.length === 0 || crossing.every((t) => inputIds.has(t.id))) {
    return { frozen: null, tail: full, boundaryShapes: [full.inputs[0]!.shape.slice(1) as number[]], boundaryLayers: [full.inputs[0]!.sourceLayer.name] };
  }
  if (crossing.some((t) => t.shape.slice(1).some((d) => d === null))) {
    throw new UsageError('The freeze boundary has tensors of unknown size; build the model with a fixed input size.');
  }
  const map = new Map<number, SymbolicTensor>();
  const tailInputs = crossing.map((t, i) => {
    const input = tf.input({ shape: t.shape.slice(1) as number[], name: `boundary_${i}_${t.sourceLayer.name}` });
    map.set(t.id, input);
    return input;
  });
  for (const layer of full.layers) {
    if (isFrozen(layer)) continue;
    const node = layer.inboundNodes[0]!;
    const inputs = node.inputTensors.map((t) => {
      const mapped = map.get(t.id);
      if (mapped === undefined) throw new Error(`cutModel: input of '${layer.name}' from '${t.sourceLayer.name}' is on neither side of the boundary`);
      return mapped;
    });
    const out = layer.apply(inputs.length === 1 ? inputs[0]! : inputs) as SymbolicTensor | SymbolicTensor[];
    const outs = Array.isArray(out) ? out : [out];
    node.outputTensors.forEach((t, i) => map.set(t.id, outs[i]!));
  }
  const tail = tf.model({ inputs: tailInputs, outputs: full.outputs.map((o) => map.get(o.id)!), name: 'tl_tail' });
  const frozenModel = tf.model({ inputs: full.inputs, outputs: crossing, name: 'tl_frozen' });
  return { frozen: frozenModel, tail, boundaryShapes: crossing.map((t) => t.shape.slice(1) as number[]), boundaryLayers: crossing.map((t) => t.sourceLayer.name) };
}

/**
 * Adds the classifier head to a backbone: global average pooling, dropout, optional hidden layer, softmax (or sigmoid,
 * one output per label, for several labels per image).
 */
export function attachHead(tf: Tf, backbone: LayersModel, options: { classes: number; hidden?: number; dropout: number; name: string; activation?: 'softmax' | 'sigmoid' }): LayersModel {
  const L = tf.layers;
  let x = L.globalAveragePooling2d({ name: 'head_pool' }).apply(backbone.outputs[0]!) as SymbolicTensor;
  x = L.dropout({ rate: options.dropout, name: 'head_dropout' }).apply(x) as SymbolicTensor;
  if (options.hidden) x = L.dense({ units: options.hidden, activation: 'relu', name: 'head_hidden' }).apply(x) as SymbolicTensor;
  x = L.dense({ units: options.classes, activation: options.activation ?? 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: backbone.inputs, outputs: x, name: options.name });
}
