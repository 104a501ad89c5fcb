// Compiles the trainable tail of a cut (a LayersModel whose inputs are the boundary tensors) into one ONNX graph per
// optimizer step: forward, the chain rule layer by layer, and the optimizer update, in standard ONNX operators
// (opset 13, no training ops). Tensors stay NHWC as Keras holds them. A window (convolution, depthwise, pooling)
// reads its taps with one Gather over a constant index table; a convolution is then one matrix product (so runtime
// weights need no layout changes), a depthwise convolution one broadcast multiply and one reduction, and their input
// gradients gather the output gradient back through the transposed table.
import type { onnx as P } from 'onnx-proto';
import type { Layer, LayersModel, SymbolicTensor } from '../backend/index.js';
import { TlError } from '../errors.js';
import { A, bnAffine, FLOAT, GraphBuilder, INT64, onnx, OPSET, pair, samePads, type Attr } from './graph.js';

/** A tail that the compiler cannot differentiate; the message names the layer. */
export class TrainStepCompileError extends TlError {
  constructor(message: string) {
    super('E_TRAIN_COMPILE', message);
  }
}

export interface TrainStepOptions {
  optimizer: 'adam' | 'sgd' | 'rmsprop';
  /** SGD and RMSprop momentum. */
  momentum: number;
  nesterov: boolean;
  labelSmoothing: number;
  /** Decoupled weight decay applied before each update (w <- w * (1 - lr * decay)), as tl's tfjs engine does. */
  weightDecay: number;
  /** Also return each trainable weight's gradient (checks against TensorFlow.js). */
  emitGradients?: boolean;
}

/** A trainable weight: its graph input, its updated value's output, and its optimizer slots. */
export interface TrainableSpec {
  /** The tfjs variable's name (`originalName`). */
  variable: string;
  shape: number[];
  input: string;
  output: string;
  gradient: string | null;
  slots: { kind: 'm' | 'v' | 'accum' | 'ms' | 'mom'; input: string; output: string }[];
}

export interface TrainStepGraph {
  bytes: Uint8Array;
  /** Graph inputs of the boundary tensors, in the tail's input order (NHWC, any batch size). */
  boundary: string[];
  /** Dropout layers' mask inputs: each the layer output's shape, already scaled by 1 / (1 - rate). */
  masks: { layer: string; input: string; shape: number[] }[];
  trainable: TrainableSpec[];
  /** Non-trainable weights the step updates (BatchNormalization's moving statistics with `--bn train`). */
  state: { variable: string; shape: number[]; input: string; output: string }[];
  /** int64 [N] labels, float [N] per-image loss weights, float scalars lr and step (1-based, for Adam). */
  inputs: { labels: string; sampleWeights: string; lr: string; step: string };
  /** Scalar outputs: the loss, the number correct, and the sum of every updated weight (finite iff they all are). */
  outputs: { loss: string; correct: string; weightsSum: string };
}

const PROB_MIN = 1e-7;
const PROB_MAX = 1 - 1e-7;

/** A value in the graph: its name and static shape (batch as -1). */
interface V {
  name: string;
  shape: number[];
}

class Builder extends GraphBuilder {
  op(type: string, inputs: string[], attrs: Attr[] = []): string {
    return this.node(type, inputs, type.toLowerCase(), attrs);
  }
  ints(values: number[]): string {
    return this.int64s('c', values);
  }
  f(value: number): string {
    return this.scalar('s', value);
  }
  /** Pads an NHWC value spatially by [top, left, bottom, right] with `fill` (default 0). */
  pad(x: string, [top, left, bottom, right]: number[], fill = 0): string {
    if (top === 0 && left === 0 && bottom === 0 && right === 0) return x;
    return this.op('Pad', [x, this.ints([0, top!, left!, 0, 0, bottom!, right!, 0]), ...(fill === 0 ? [] : [this.f(fill)])]);
  }
  /** Slices axes 1 and 2 of an NHWC value. */
  slice2d(x: string, starts: [number, number], ends: [number, number], steps: [number, number] = [1, 1]): string {
    return this.op('Slice', [x, this.ints(starts), this.ints(ends), this.ints([1, 2]), this.ints(steps)]);
  }
  reduceSum(x: string, axes: number[], keepdims = false): string {
    return this.op('ReduceSum', [x, this.ints(axes)], [A.int('keepdims', keepdims ? 1 : 0)]);
  }
  reshape(x: string, shape: number[]): string {
    return this.op('Reshape', [x, this.ints(shape)]);
  }
  /** The sum of values of one shape, as a chain of Adds (ONNX Runtime threads Add; its variadic Sum runs on one). */
  add(xs: string[]): string {
    return xs.slice(1).reduce((acc, t) => this.op('Add', [acc, t]), xs[0]!);
  }
  /** A constant int64 tensor of the given shape. */
  int64Tensor(base: string, dims: number[], values: number[]): string {
    const name = this.fresh(base);
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims, dataType: INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }
}

/** Geometry of a convolution window over an NHWC input. */
interface Window {
  h: number;
  w: number;
  c: number;
  kh: number;
  kw: number;
  stride: number[];
  dilation: number[];
  /** [top, left, bottom, right]. */
  pads: number[];
  ho: number;
  wo: number;
}

function windowOf(layer: Layer, input: V, kernel: number[]): Window {
  const config = layer.getConfig() as { strides?: number | number[] | null; dilationRate?: number | number[]; padding?: string };
  const stride = pair(config.strides ?? undefined, 1);
  const dilation = pair(config.dilationRate, 1);
  const [, h, w, c] = input.shape as [number, number, number, number];
  if (!(h > 0 && w > 0)) throw new TrainStepCompileError(`${layer.name}: the tail needs a fixed input size.`);
  const [kh, kw] = kernel as [number, number];
  let pads = [0, 0, 0, 0];
  if (config.padding === 'same') {
    const [top, bottom] = samePads(h, kh, stride[0]!, dilation[0]!);
    const [left, right] = samePads(w, kw, stride[1]!, dilation[1]!);
    pads = [top, left, bottom, right];
  } else if (config.padding !== 'valid') {
    throw new TrainStepCompileError(`${layer.name}: padding '${String(config.padding)}' has no gradient rule.`);
  }
  const hp = h + pads[0]! + pads[2]!;
  const wp = w + pads[1]! + pads[3]!;
  const ho = Math.floor((hp - (kh - 1) * dilation[0]! - 1) / stride[0]!) + 1;
  const wo = Math.floor((wp - (kw - 1) * dilation[1]! - 1) / stride[1]!) + 1;
  return { h, w, c, kh, kw, stride, dilation, pads, ho, wo };
}

const isPointwise = (win: Window) => win.kh === 1 && win.kw === 1 && win.stride.every((s) => s === 1) && win.pads.every((p) => p === 0);

/**
 * The window's taps as one tensor [N, ho, wo, K, c] (K = kh * kw, Keras kernel order): a single Gather over the
 * flattened input with a constant index table, where padding reads an extra row of `fill` appended to the input.
 * One pass that ONNX Runtime threads, instead of a Pad and K strided Slices.
 */
function gatherTaps(g: Builder, x: string, win: Window, fill = 0): string {
  const k = win.kh * win.kw;
  const zero = win.h * win.w;
  const idx: number[] = [];
  let padded = false;
  for (let oi = 0; oi < win.ho; oi++) {
    for (let oj = 0; oj < win.wo; oj++) {
      for (let i = 0; i < win.kh; i++) {
        for (let j = 0; j < win.kw; j++) {
          const r = oi * win.stride[0]! + i * win.dilation[0]! - win.pads[0]!;
          const c = oj * win.stride[1]! + j * win.dilation[1]! - win.pads[1]!;
          const inside = r >= 0 && r < win.h && c >= 0 && c < win.w;
          padded ||= !inside;
          idx.push(inside ? r * win.w + c : zero);
        }
      }
    }
  }
  const flat = withExtraRow(g, g.reshape(x, [0, win.h * win.w, win.c]), 3, padded, fill);
  return g.op('Gather', [flat, g.int64Tensor('taps', [win.ho, win.wo, k], idx)], [A.int('axis', 1)]);
}

/**
 * The transposed table: for each input position and tap, the output position whose window read it through that tap
 * (or the extra zero row), [h, w, K]. Gathering a gradient [N, ho, wo, ...] with it puts each output's gradient
 * where its taps came from; `perTap` indexes a [N, ho * wo * K, ...] tensor of per-tap gradients instead.
 */
function scatterIndex(win: Window, perTap: boolean): { idx: number[]; padded: boolean } {
  const k = win.kh * win.kw;
  const zero = win.ho * win.wo * (perTap ? k : 1);
  const idx: number[] = [];
  let padded = false;
  for (let r = 0; r < win.h; r++) {
    for (let c = 0; c < win.w; c++) {
      for (let i = 0; i < win.kh; i++) {
        for (let j = 0; j < win.kw; j++) {
          const a = r + win.pads[0]! - i * win.dilation[0]!;
          const b = c + win.pads[1]! - j * win.dilation[1]!;
          const oi = a / win.stride[0]!;
          const oj = b / win.stride[1]!;
          const hit = a >= 0 && b >= 0 && Number.isInteger(oi) && Number.isInteger(oj) && oi < win.ho && oj < win.wo;
          padded ||= !hit;
          const o = oi * win.wo + oj;
          idx.push(hit ? (perTap ? o * k + i * win.kw + j : o) : zero);
        }
      }
    }
  }
  return { idx, padded };
}

/** Gathers `dy` ([N, rows, ...rest] once flattened) onto the input positions: [N, h, w, K, ...rest]. */
function gatherBack(g: Builder, dy: string, win: Window, rows: number, rest: number[], perTap: boolean): string {
  const { idx, padded } = scatterIndex(win, perTap);
  const flat = withExtraRow(g, g.reshape(dy, [0, rows, ...rest]), 2 + rest.length, padded, 0);
  return g.op('Gather', [flat, g.int64Tensor('scatter', [win.h, win.w, win.kh * win.kw], idx)], [A.int('axis', 1)]);
}

/** Appends one row of `fill` along axis 1 of a [N, rows, ...] value (the row padding reads), when it is needed. */
function withExtraRow(g: Builder, x: string, rank: number, needed: boolean, fill: number): string {
  if (!needed) return x;
  const pads = new Array<number>(2 * rank).fill(0);
  pads[rank + 1] = 1;
  return g.op('Pad', [x, g.ints(pads), ...(fill === 0 ? [] : [g.f(fill)])]);
}

/** `dy` where `mask` holds and 0 elsewhere: one pass over the gradient (a multiply by the cast mask takes two). */
function passWhere(g: Builder, mask: string, dy: string): string {
  return g.op('Where', [mask, dy, g.f(0)]);
}

/** Forward and backward of an activation by name (Keras's `activation` argument or an Activation/ReLU layer). */
function activation(g: Builder, kind: { name: string; max?: number | null }, layer: Layer) {
  switch (kind.name) {
    case 'linear':
      return { forward: (x: string) => x, backward: (dy: string) => dy };
    case 'relu':
      if (kind.max === undefined || kind.max === null) {
        return { forward: (x: string) => g.op('Relu', [x]), backward: (dy: string, x: string) => passWhere(g, g.op('Greater', [x, g.f(0)]), dy) };
      }
      // tfjs's ReLU layer with a maximum is relu then clipByValue: its gradient passes where 0 < x <= max (blocked at
      // an exact 0, as pretrained networks' dead channels produce).
      return {
        forward: (x: string) => g.op('Clip', [x, g.f(0), g.f(kind.max!)]),
        backward: (dy: string, x: string) => passWhere(g, g.op('And', [g.op('Greater', [x, g.f(0)]), g.op('LessOrEqual', [x, g.f(kind.max!)])]), dy),
      };
    case 'relu6':
      // tfjs-layers' relu6 activation is minimum(6, relu(x)): its gradient passes where 0 < x < 6.
      return {
        forward: (x: string) => g.op('Clip', [x, g.f(0), g.f(6)]),
        backward: (dy: string, x: string) => passWhere(g, g.op('And', [g.op('Greater', [x, g.f(0)]), g.op('Less', [x, g.f(6)])]), dy),
      };
    case 'sigmoid':
      return {
        forward: (x: string) => g.op('Sigmoid', [x]),
        backward: (dy: string, _x: string, y: string) => g.op('Mul', [dy, g.op('Mul', [y, g.op('Sub', [g.f(1), y])])]),
      };
    default:
      throw new TrainStepCompileError(`${layer.name}: activation '${kind.name}' has no gradient rule.`);
  }
}

/** What a layer's backward pass needs: it returns the gradients of its inputs (null where none is needed). */
type Backward = (dy: string) => (string | null)[];

/**
 * Compiles one training step of `tail` (its last layer a softmax classifier) for the given optimizer. Frozen layers
 * inside the tail (BatchNormalization with `--bn frozen`) become constants; every trainable weight is a graph input
 * with an updated output.
 */
export function compileTrainStep(tail: LayersModel, options: TrainStepOptions): TrainStepGraph {
  const g = new Builder();
  const values = new Map<number, V>();
  const needsGrad = new Map<number, boolean>();
  const graphInputs: P.IValueInfoProto[] = [];
  const graphOutputs: P.IValueInfoProto[] = [];
  const dims = (shape: number[]) => ({ dim: shape.map((d) => (d < 0 ? { dimParam: 'N' } : { dimValue: d })) });
  const addInput = (name: string, shape: number[], type = FLOAT) => {
    graphInputs.push({ name, type: { tensorType: { elemType: type, shape: dims(shape) } } });
    return name;
  };
  const addOutput = (name: string, shape: number[]) => graphOutputs.push({ name, type: { tensorType: { elemType: FLOAT, shape: dims(shape) } } });
  const shapeOf = (t: SymbolicTensor) => t.shape.map((d) => (d === null ? -1 : d));

  const boundary = tail.inputs.map((t, i) => {
    const name = addInput(`boundary_${i}`, shapeOf(t));
    values.set(t.id, { name, shape: shapeOf(t) });
    needsGrad.set(t.id, false);
    return name;
  });
  const masks: TrainStepGraph['masks'] = [];
  const trainable: TrainableSpec[] = [];
  const state: TrainStepGraph['state'] = [];
  const weightInput = (layer: Layer, short: string): { name: string; spec: TrainableSpec | null } => {
    const w = layer.weights.find((v) => v.originalName.split('/').pop()!.replace(/:0$/, '') === short);
    if (!w) throw new TrainStepCompileError(`${layer.name}: no weight '${short}'.`);
    const shape = w.shape as number[];
    if (!layer.trainable || !w.trainable) return { name: g.floats(`${layer.name}_${short}`, shape, w.read().dataSync() as Float32Array), spec: null };
    const input = addInput(`w${trainable.length}_${layer.name}_${short}`, shape);
    const spec: TrainableSpec = { variable: w.originalName, shape, input, output: `${input}_new`, gradient: null, slots: [] };
    trainable.push(spec);
    return { name: input, spec };
  };
  const grads = new Map<TrainableSpec, string>();
  const tape: { inputs: SymbolicTensor[]; output: SymbolicTensor; backward: Backward }[] = [];

  const outputTensor = tail.outputs[0]!;
  if (tail.outputs.length !== 1) throw new TrainStepCompileError('The tail must have one output (the classifier).');
  let logits: V | null = null;

  const nodes = nodesOf(tail);
  // A convolution whose only reader is a frozen BatchNormalization takes the normalization into its kernel and bias
  // (a per-channel scale of a small weight tensor instead of a multiply over the whole activation, forward and back);
  // the normalization layer then passes its input through.
  const readers = new Map<number, Layer[]>();
  for (const [layer, node] of nodes) for (const t of node.inputTensors) readers.set(t.id, [...(readers.get(t.id) ?? []), layer]);
  const folded = new Set<Layer>();
  const frozenNormAfter = (out: SymbolicTensor, activationName: string): Layer | null => {
    const next = readers.get(out.id);
    if (activationName !== 'linear' || out.id === tail.outputs[0]!.id || next?.length !== 1) return null;
    const bn = next[0]!;
    const axis = (bn.getConfig() as { axis?: number }).axis ?? -1;
    return bn.getClassName() === 'BatchNormalization' && !bn.trainable && (axis === -1 || axis === out.shape.length - 1) ? bn : null;
  };
  for (const layer of tail.layers) {
    const cls = layer.getClassName();
    if (cls === 'InputLayer') continue;
    const node = nodes.get(layer);
    if (!node) continue;
    const ins = node.inputTensors;
    const out = node.outputTensors[0]!;
    const xs = ins.map((t) => values.get(t.id));
    if (xs.some((v) => v === undefined)) throw new TrainStepCompileError(`${layer.name}: its input was not computed (the tail is not in order).`);
    const x = xs[0]!;
    const config = layer.getConfig() as Record<string, unknown>;
    const outShape = shapeOf(out);
    const upstream = ins.some((t) => needsGrad.get(t.id));
    const isFinal = out.id === outputTensor.id;
    let y: string;
    let backward: Backward;
    let hasWeights = false;

    switch (cls) {
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        const depthwise = cls === 'DepthwiseConv2D';
        const kernel = weightInput(layer, depthwise ? 'depthwise_kernel' : 'kernel');
        const bias = (config.useBias as boolean) ? weightInput(layer, 'bias') : null;
        hasWeights = kernel.spec !== null || bias?.spec !== null;
        const kshape = layer.weights.find((w) => /(depthwise_)?kernel/.test(w.originalName))!.shape as number[];
        const win = windowOf(layer, x, kshape);
        const actName = (config.activation as string | undefined) ?? 'linear';
        const act = activation(g, { name: actName }, layer);
        const c = win.c;
        const k = win.kh * win.kw;
        const pointwise = isPointwise(win);
        const outChannels = kshape[3]! * (depthwise ? c : 1);
        const norm = frozenNormAfter(out, actName);
        const affine = norm ? bnAffine(norm, outChannels) : null;
        if (norm) folded.add(norm);
        // The normalization's scale against the kernel [kh, kw, ci, co] (depthwise: [kh, kw, c, m]) and the output.
        const scaleK = affine ? g.floats(`${layer.name}_folded_scale`, depthwise ? [c, kshape[3]!] : [outChannels], affine.scale) : null;
        // (Made only where a bias needs it: an unused initializer is a warning on every session.)
        const scaleOut = affine && bias ? (depthwise ? g.floats(`${layer.name}_folded_scale_out`, [outChannels], affine.scale) : scaleK!) : null;
        const scaled = (w: string, scale: string | null) => (scale ? g.op('Mul', [w, scale]) : w);
        const kernelGrad = (grad: string) => scaled(g.reshape(grad, kshape), scaleK);
        let pre: string;
        let backPre: (dz: string) => string | null;
        if (!depthwise) {
          const co = kshape[3]!;
          const rows = k * c;
          // im2col as one Gather: [N, ho, wo, K, c] read as [N, ho, wo, K * c], in the kernel's [kh, kw, ci] order.
          const cols = pointwise ? x.name : g.reshape(gatherTaps(g, x.name, win), [0, win.ho, win.wo, rows]);
          const k2 = scaled(g.reshape(kernel.name, [rows, co]), scaleK);
          pre = g.op('MatMul', [cols, k2]);
          backPre = (dz) => {
            const dz2 = g.reshape(dz, [-1, co]);
            if (kernel.spec) grads.set(kernel.spec, kernelGrad(g.op('Gemm', [g.reshape(cols, [-1, rows]), dz2], [A.int('transA', 1)])));
            if (!upstream) return null;
            const dcols = g.op('MatMul', [dz, g.op('Transpose', [k2], [A.ints('perm', [1, 0])])]);
            if (pointwise) return dcols;
            // col2im: each input position sums the tap gradients of the windows that read it.
            return g.reduceSum(gatherBack(g, dcols, win, win.ho * win.wo * k, [c], true), [3]);
          };
        } else {
          const m = kshape[3]!;
          // The kernel as [K, c] (or [K, c, m]), broadcast against the taps' last axes.
          const kt = g.reshape(scaled(g.reshape(kernel.name, [k, c, m]), scaleK), m === 1 ? [k, c] : [k, c, m]);
          const tapsOf = pointwise ? g.reshape(x.name, [0, win.ho, win.wo, 1, c]) : gatherTaps(g, x.name, win);
          const t = m === 1 ? tapsOf : g.op('Unsqueeze', [tapsOf, g.ints([5])]);
          const summed = g.reduceSum(g.op('Mul', [t, kt]), [3]);
          pre = m === 1 ? summed : g.reshape(summed, [0, win.ho, win.wo, c * m]);
          backPre = (dz) => {
            const dz5 = m === 1 ? dz : g.reshape(dz, [0, win.ho, win.wo, c, m]);
            const dzTaps = g.op('Unsqueeze', [dz5, g.ints([3])]);
            if (kernel.spec) grads.set(kernel.spec, kernelGrad(g.reduceSum(g.op('Mul', [t, dzTaps]), [0, 1, 2])));
            if (!upstream) return null;
            // Each input position: the output gradients of the windows that read it, times the tap's weight.
            const back = pointwise ? dzTaps : gatherBack(g, dz5, win, win.ho * win.wo, m === 1 ? [c] : [c, m], false);
            return g.reduceSum(g.op('Mul', [back, kt]), m === 1 ? [3] : [3, 5]);
          };
        }
        const shift = affine ? g.floats(`${layer.name}_folded_shift`, [outChannels], affine.shift) : null;
        const offset = bias && shift ? g.op('Add', [g.op('Mul', [bias.name, scaleOut!]), shift]) : (bias?.name ?? shift);
        const biased = offset ? g.op('Add', [pre, offset]) : pre;
        y = act.forward(biased);
        backward = (dy) => {
          const dz = act.backward(dy, biased, y);
          if (bias?.spec) grads.set(bias.spec, scaled(g.reduceSum(dz, [0, 1, 2]), scaleOut));
          return [backPre(dz)];
        };
        break;
      }
      case 'Dense': {
        if (x.shape.length !== 2) throw new TrainStepCompileError(`${layer.name}: Dense on a rank-${x.shape.length} input has no gradient rule.`);
        const kernel = weightInput(layer, 'kernel');
        const bias = (config.useBias as boolean) ? weightInput(layer, 'bias') : null;
        hasWeights = kernel.spec !== null || bias?.spec !== null;
        const act = (config.activation as string | undefined) ?? 'linear';
        const pre = g.op('MatMul', [x.name, kernel.name]);
        const z = bias ? g.op('Add', [pre, bias.name]) : pre;
        const backZ = (dz: string) => {
          if (kernel.spec) grads.set(kernel.spec, g.op('Gemm', [x.name, dz], [A.int('transA', 1)]));
          if (bias?.spec) grads.set(bias.spec, g.reduceSum(dz, [0]));
          return upstream ? g.op('Gemm', [dz, kernel.name], [A.int('transB', 1)]) : null;
        };
        if (act === 'softmax') {
          if (!isFinal) throw new TrainStepCompileError(`${layer.name}: softmax is supported only as the classifier's output.`);
          logits = { name: z, shape: outShape };
          y = g.op('Softmax', [z], [A.int('axis', -1)]);
          backward = (dz) => [backZ(dz)];
        } else {
          const a = activation(g, { name: act }, layer);
          y = a.forward(z);
          backward = (dy) => [backZ(a.backward(dy, z, y))];
        }
        break;
      }
      case 'BatchNormalization': {
        const c = x.shape[x.shape.length - 1]!;
        if (layer.trainable) {
          // Training mode: batch statistics (biased variance, as tf.moments), their full gradient, and the moving
          // averages updated as tfjs-layers does (moving -= (moving - batch) * (1 - momentum)).
          if (((config.axis as number | undefined) ?? -1) !== -1 && config.axis !== x.shape.length - 1) throw new TrainStepCompileError(`${layer.name}: BatchNormalization over axis ${String(config.axis)} has no gradient rule.`);
          const eps = (config.epsilon as number | undefined) ?? 1e-3;
          const momentum = (config.momentum as number | undefined) ?? 0.99;
          const axes = x.shape.slice(0, -1).map((_, i) => i);
          const gamma = (config.scale as boolean | undefined) !== false ? weightInput(layer, 'gamma') : null;
          const beta = (config.center as boolean | undefined) !== false ? weightInput(layer, 'beta') : null;
          hasWeights = gamma?.spec != null || beta?.spec != null;
          const moving = (short: string) => {
            const w = layer.weights.find((v) => v.originalName.split('/').pop()!.replace(/:0$/, '') === short)!;
            const input = addInput(`state${state.length}_${layer.name}_${short}`, [c]);
            const entry = { variable: w.originalName, shape: [c], input, output: `${input}_new` };
            state.push(entry);
            addOutput(entry.output, [c]);
            return entry;
          };
          const movingMean = moving('moving_mean');
          const movingVariance = moving('moving_variance');
          const mean = g.op('ReduceMean', [x.name], [A.ints('axes', axes), A.int('keepdims', 1)]);
          const centred = g.op('Sub', [x.name, mean]);
          const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred])], [A.ints('axes', axes), A.int('keepdims', 1)]);
          const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.f(eps)])])]);
          const xhat = g.op('Mul', [centred, rstd]);
          const scaled = gamma ? g.op('Mul', [xhat, gamma.name]) : xhat;
          y = beta ? g.op('Add', [scaled, beta.name]) : scaled;
          const update = (entry: typeof movingMean, batch: string) => g.node('Sub', [entry.input, g.op('Mul', [g.op('Sub', [entry.input, g.reshape(batch, [c])]), g.f(1 - momentum)])], 'moving', [], entry.output);
          update(movingMean, mean);
          update(movingVariance, variance);
          backward = (dy) => {
            if (gamma?.spec) grads.set(gamma.spec, g.reduceSum(g.op('Mul', [dy, xhat]), axes));
            if (beta?.spec) grads.set(beta.spec, g.reduceSum(dy, axes));
            if (!upstream) return [null];
            const dxhat = gamma ? g.op('Mul', [dy, gamma.name]) : dy;
            const meanOf = (t: string) => g.op('ReduceMean', [t], [A.ints('axes', axes), A.int('keepdims', 1)]);
            return [g.op('Mul', [rstd, g.op('Sub', [g.op('Sub', [dxhat, meanOf(dxhat)]), g.op('Mul', [xhat, meanOf(g.op('Mul', [dxhat, xhat]))])])])];
          };
          break;
        }
        if (folded.has(layer)) {
          // Already applied by the convolution before it.
          y = x.name;
          backward = (dy) => [upstream ? dy : null];
          break;
        }
        const { scale, shift } = bnAffine(layer, c);
        const s = g.floats(`${layer.name}_scale`, [c], scale);
        y = g.op('Add', [g.op('Mul', [x.name, s]), g.floats(`${layer.name}_shift`, [c], shift)]);
        backward = (dy) => [upstream ? g.op('Mul', [dy, s]) : null];
        break;
      }
      case 'ReLU':
      case 'Activation': {
        const name = cls === 'ReLU' ? 'relu' : (config.activation as string);
        if (cls === 'ReLU' && (((config.negativeSlope as number | undefined) ?? 0) !== 0 || ((config.threshold as number | undefined) ?? 0) !== 0)) {
          throw new TrainStepCompileError(`${layer.name}: ReLU with a negative slope or threshold has no gradient rule.`);
        }
        if (name === 'softmax') {
          if (!isFinal) throw new TrainStepCompileError(`${layer.name}: softmax is supported only as the classifier's output.`);
          logits = x;
          y = g.op('Softmax', [x.name], [A.int('axis', -1)]);
          backward = (dz) => [dz];
          break;
        }
        const a = activation(g, { name, max: cls === 'ReLU' ? ((config.maxValue as number | null | undefined) ?? null) : undefined }, layer);
        y = a.forward(x.name);
        backward = (dy) => [upstream ? a.backward(dy, x.name, y) : null];
        break;
      }
      case 'Add':
        y = g.add(xs.map((v) => v!.name));
        backward = (dy) => ins.map((t) => (needsGrad.get(t.id) ? dy : null));
        break;
      case 'ZeroPadding2D': {
        const p = config.padding as [[number, number], [number, number]];
        y = g.pad(x.name, [p[0][0], p[1][0], p[0][1], p[1][1]]);
        backward = (dy) => [upstream ? g.slice2d(dy, [p[0][0], p[1][0]], [p[0][0] + x.shape[1]!, p[1][0] + x.shape[2]!]) : null];
        break;
      }
      case 'GlobalAveragePooling2D': {
        const keep = (config.keepdims as boolean | undefined) === true;
        const [, h, w, c] = x.shape as [number, number, number, number];
        y = g.op('ReduceMean', [x.name], [A.ints('axes', [1, 2]), A.int('keepdims', keep ? 1 : 0)]);
        backward = (dy) => [upstream ? g.op('Expand', [g.op('Mul', [keep ? dy : g.reshape(dy, [0, 1, 1, c]), g.f(1 / (h * w))]), g.ints([1, h, w, 1])]) : null];
        break;
      }
      case 'Dropout': {
        if (((config.rate as number | undefined) ?? 0) === 0) {
          y = x.name;
          backward = (dy) => [upstream ? dy : null];
          break;
        }
        const mask = addInput(`mask_${layer.name}`, outShape);
        masks.push({ layer: layer.name, input: mask, shape: outShape });
        y = g.op('Mul', [x.name, mask]);
        backward = (dy) => [upstream ? g.op('Mul', [dy, mask]) : null];
        break;
      }
      case 'Flatten':
      case 'Reshape':
        y = g.reshape(x.name, [0, ...outShape.slice(1)]);
        backward = (dy) => [upstream ? g.reshape(dy, [0, ...x.shape.slice(1)]) : null];
        break;
      case 'Multiply': {
        if (xs.length !== 2 || xs.some((v) => v!.shape.length !== outShape.length)) throw new TrainStepCompileError(`${layer.name}: Multiply of ${xs.length} inputs of different ranks has no gradient rule.`);
        const [a, b] = xs as [V, V];
        y = g.op('Mul', [a.name, b.name]);
        // Each factor's gradient, summed over the axes it was broadcast along (squeeze-excite's [N,1,1,C]).
        const reduceTo = (t: string, shape: number[]) => {
          const axes = shape.flatMap((d, i) => (i > 0 && d === 1 && outShape[i] !== 1 ? [i] : []));
          return axes.length === 0 ? t : g.reduceSum(t, axes, true);
        };
        backward = (dy) => [
          needsGrad.get(ins[0]!.id) ? reduceTo(g.op('Mul', [dy, b.name]), a.shape) : null,
          needsGrad.get(ins[1]!.id) ? reduceTo(g.op('Mul', [dy, a.name]), b.shape) : null,
        ];
        break;
      }
      case 'TFOpLambda': {
        const operand = config.operand as number;
        if (config.op === 'add') {
          y = g.op('Add', [x.name, g.f(operand)]);
          backward = (dy) => [upstream ? dy : null];
        } else {
          y = g.op('Mul', [x.name, g.f(operand)]);
          backward = (dy) => [upstream ? g.op('Mul', [dy, g.f(operand)]) : null];
        }
        break;
      }
      case 'Rescaling': {
        const scale = config.scale as number;
        y = g.op('Add', [g.op('Mul', [x.name, g.f(scale)]), g.f((config.offset as number | undefined) ?? 0)]);
        backward = (dy) => [upstream ? g.op('Mul', [dy, g.f(scale)]) : null];
        break;
      }
      case 'Concatenate': {
        const rank = outShape.length;
        const axis = ((config.axis as number | undefined) ?? -1) < 0 ? rank + ((config.axis as number | undefined) ?? -1) : (config.axis as number);
        y = g.op('Concat', xs.map((v) => v!.name), [A.int('axis', axis)]);
        backward = (dy) => {
          const parts = xs.map(() => g.fresh('part'));
          g.nodes.push({ opType: 'Split', input: [dy, g.int64s('split', xs.map((v) => v!.shape[axis]!))], output: parts, name: g.fresh('split'), attribute: [A.int('axis', axis)] });
          return ins.map((t, k) => (needsGrad.get(t.id) ? parts[k]! : null));
        };
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const size = pair(config.poolSize as number | number[], 2);
        const win = windowOf(layer, x, size);
        if (cls === 'MaxPooling2D') {
          const cols = gatherTaps(g, x.name, win, -3.4e38);
          y = g.op('ReduceMax', [cols], [A.ints('axes', [3]), A.int('keepdims', 0)]);
          backward = (dy) => {
            if (!upstream) return [null];
            // The gradient goes to the first maximum of each window in row-major order, as tfjs's MaxPoolGrad routes
            // it (ArgMax picks the first of equal values).
            const first = g.op('ArgMax', [cols], [A.int('axis', 3), A.int('keepdims', 0), A.int('select_last_index', 0)]);
            const hot = g.op('OneHot', [first, g.int64s('depth', [win.kh * win.kw]), g.floats('onehot_values', [2], Float32Array.of(0, 1))], [A.int('axis', 3)]);
            const perTap = g.op('Mul', [hot, g.op('Unsqueeze', [dy, g.ints([3])])]);
            return [g.reduceSum(gatherBack(g, perTap, win, win.ho * win.wo * win.kh * win.kw, [win.c], true), [3])];
          };
        } else {
          // Keras divides by the window's pixels inside the image ('same' padding counts no padded zeros).
          const counts = new Float32Array(win.ho * win.wo);
          for (let i = 0; i < win.ho; i++) {
            for (let j = 0; j < win.wo; j++) {
              const rows = Array.from({ length: win.kh }, (_, a) => i * win.stride[0]! + a - win.pads[0]!).filter((r) => r >= 0 && r < win.h).length;
              const cols = Array.from({ length: win.kw }, (_, b) => j * win.stride[1]! + b - win.pads[1]!).filter((c) => c >= 0 && c < win.w).length;
              counts[i * win.wo + j] = 1 / (rows * cols);
            }
          }
          const inv = g.floats(`${layer.name}_inverse_counts`, [1, win.ho, win.wo, 1], counts);
          y = g.op('Mul', [g.reduceSum(gatherTaps(g, x.name, win), [3]), inv]);
          backward = (dy) => {
            if (!upstream) return [null];
            return [g.reduceSum(gatherBack(g, g.op('Mul', [dy, inv]), win, win.ho * win.wo, [win.c], false), [3])];
          };
        }
        break;
      }
      default:
        throw new TrainStepCompileError(`${layer.name}: layer class ${cls} has no gradient rule.`);
    }
    values.set(out.id, { name: y, shape: outShape });
    needsGrad.set(out.id, upstream || hasWeights);
    tape.push({ inputs: ins, output: out, backward });
  }
  if (logits === null) throw new TrainStepCompileError(`The tail's output ('${outputTensor.sourceLayer.name}') must be a softmax: tl trains classifiers.`);

  // Loss: Keras's categorical cross-entropy of clipped probabilities, smoothed targets, per-image weights, mean.
  const probs = values.get(outputTensor.id)!.name;
  const classes = values.get(outputTensor.id)!.shape[1]!;
  const labels = addInput('labels', [-1], INT64);
  const sampleWeights = addInput('sample_weights', [-1]);
  const lr = addInput('lr', []);
  const step = addInput('step', []);
  let target = g.op('OneHot', [labels, g.int64s('depth', [classes]), g.floats('onehot_values', [2], Float32Array.of(0, 1))], [A.int('axis', -1)]);
  if (options.labelSmoothing > 0) target = g.op('Add', [g.op('Mul', [target, g.f(1 - options.labelSmoothing)]), g.f(options.labelSmoothing / classes)]);
  const clipped = g.op('Clip', [probs, g.f(PROB_MIN), g.f(PROB_MAX)]);
  const perImage = g.op('Neg', [g.reduceSum(g.op('Mul', [target, g.op('Log', [clipped])]), [1])]);
  g.node('ReduceMean', [g.op('Mul', [perImage, sampleWeights])], 'loss', [A.int('keepdims', 0)], 'loss');
  const predicted = g.op('ArgMax', [probs], [A.int('axis', 1), A.int('keepdims', 0)]);
  g.node('ReduceSum', [g.op('Cast', [g.op('Equal', [predicted, labels])], [A.int('to', FLOAT)])], 'correct', [A.int('keepdims', 0)], 'correct');
  addOutput('loss', []);
  addOutput('correct', []);

  // d loss / d probs through the clip (tfjs passes the gradient where min <= p <= max), then the softmax.
  const count = g.op('Cast', [g.op('Gather', [g.op('Shape', [labels]), g.int64s('zero', [0])])], [A.int('to', FLOAT)]);
  const weightPerImage = g.op('Unsqueeze', [g.op('Div', [sampleWeights, count]), g.ints([1])]);
  const inRange = g.op('Cast', [g.op('And', [g.op('Not', [g.op('Less', [probs, g.f(PROB_MIN)])]), g.op('Not', [g.op('Greater', [probs, g.f(PROB_MAX)])])])], [A.int('to', FLOAT)]);
  const dProbs = g.op('Mul', [g.op('Neg', [g.op('Div', [g.op('Mul', [target, weightPerImage]), clipped])]), inRange]);
  const dLogits = g.op('Mul', [probs, g.op('Sub', [dProbs, g.reduceSum(g.op('Mul', [dProbs, probs]), [1], true)])]);

  // The chain rule, last layer first; a tensor used by several layers gets the sum of their gradients.
  const pending = new Map<number, string[]>([[outputTensor.id, [dLogits]]]);
  for (let i = tape.length - 1; i >= 0; i--) {
    const entry = tape[i]!;
    const parts = pending.get(entry.output.id);
    if (!parts) continue;
    const dy = g.add(parts);
    entry.backward(dy).forEach((dx, k) => {
      if (dx === null) return;
      const id = entry.inputs[k]!.id;
      pending.set(id, [...(pending.get(id) ?? []), dx]);
    });
  }

  // The optimizer update, exactly as tfjs applies it (after tl's decoupled weight decay).
  const lrDecay = options.weightDecay > 0 ? g.op('Sub', [g.f(1), g.op('Mul', [lr, g.f(options.weightDecay)])]) : null;
  const b1 = 0.9;
  const b2 = 0.999;
  const eps = 1e-7;
  const oneMinusB1t = options.optimizer === 'adam' ? g.op('Sub', [g.f(1), g.op('Pow', [g.f(b1), step])]) : '';
  const oneMinusB2t = options.optimizer === 'adam' ? g.op('Sub', [g.f(1), g.op('Pow', [g.f(b2), step])]) : '';
  const sums: string[] = [];
  for (const spec of trainable) {
    const grad = grads.get(spec);
    if (grad === undefined) throw new TrainStepCompileError(`Weight ${spec.variable} gets no gradient from the loss.`);
    if (options.emitGradients) {
      spec.gradient = `${spec.input}_grad`;
      g.node('Identity', [grad], 'grad', [], spec.gradient);
      addOutput(spec.gradient, spec.shape);
    }
    const w = lrDecay ? g.op('Mul', [spec.input, lrDecay]) : spec.input;
    const slot = (kind: TrainableSpec['slots'][number]['kind']) => {
      const s = { kind, input: addInput(`${spec.input}_${kind}`, spec.shape), output: `${spec.input}_${kind}_new` };
      spec.slots.push(s);
      addOutput(s.output, spec.shape);
      return s;
    };
    // The new weight is w - step, written straight to the graph output (no copy through an Identity).
    let stepOf: string;
    if (options.optimizer === 'adam') {
      const m = slot('m');
      const v = slot('v');
      g.node('Add', [g.op('Mul', [m.input, g.f(b1)]), g.op('Mul', [grad, g.f(1 - b1)])], 'm', [], m.output);
      g.node('Add', [g.op('Mul', [v.input, g.f(b2)]), g.op('Mul', [g.op('Mul', [grad, grad]), g.f(1 - b2)])], 'v', [], v.output);
      const mHat = g.op('Div', [m.output, oneMinusB1t]);
      const vHat = g.op('Div', [v.output, oneMinusB2t]);
      stepOf = g.op('Mul', [g.op('Div', [mHat, g.op('Add', [g.op('Sqrt', [vHat]), g.f(eps)])]), lr]);
    } else if (options.optimizer === 'rmsprop') {
      const ms = slot('ms');
      const mom = slot('mom');
      g.node('Add', [g.op('Mul', [ms.input, g.f(0.9)]), g.op('Mul', [g.op('Mul', [grad, grad]), g.f(1 - 0.9)])], 'ms', [], ms.output);
      g.node('Add', [g.op('Mul', [mom.input, g.f(options.momentum)]), g.op('Div', [g.op('Mul', [grad, lr]), g.op('Sqrt', [g.op('Add', [ms.output, g.f(eps)])])])], 'mom', [], mom.output);
      stepOf = mom.output;
    } else if (options.momentum > 0 || options.nesterov) {
      const accum = slot('accum');
      g.node('Add', [g.op('Mul', [accum.input, g.f(options.momentum)]), grad], 'accum', [], accum.output);
      const direction = options.nesterov ? g.op('Add', [grad, g.op('Mul', [accum.output, g.f(options.momentum)])]) : accum.output;
      stepOf = g.op('Mul', [direction, lr]);
    } else {
      stepOf = g.op('Mul', [grad, lr]);
    }
    g.node('Sub', [w, stepOf], 'updated', [], spec.output);
    addOutput(spec.output, spec.shape);
    sums.push(g.reduceSum(spec.output, spec.shape.map((_, i) => i)));
  }
  // One number that is finite only if every updated weight is (NaN and infinities propagate through the sum).
  g.node('Sum', sums.length > 0 ? sums : [g.f(0)], 'weights_sum', [], 'weights_sum');
  addOutput('weights_sum', []);

  const proto = onnx.ModelProto.create({
    irVersion: 7,
    producerName: 'tl',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: { name: `${tail.name}_train_step`, node: g.nodes, initializer: g.initializers, input: graphInputs, output: graphOutputs },
  });
  return { bytes: onnx.ModelProto.encode(proto).finish(), boundary, masks, trainable, state, inputs: { labels, sampleWeights, lr, step }, outputs: { loss: 'loss', correct: 'correct', weightsSum: 'weights_sum' } };
}

type LayerNode = Layer['inboundNodes'][number];

/**
 * The node of each layer that belongs to `model`: a tail's layers are applied twice (in the full model and in the
 * tail), so each has several inbound nodes; the tail's are those reached from its outputs.
 */
function nodesOf(model: LayersModel): Map<Layer, LayerNode> {
  const chosen = new Map<Layer, LayerNode>();
  const inputs = new Set(model.inputs.map((t) => t.id));
  const stack = [...model.outputs];
  while (stack.length > 0) {
    const t = stack.pop()!;
    const layer = t.sourceLayer as Layer;
    if (inputs.has(t.id) || chosen.has(layer)) continue;
    const node = layer.inboundNodes[t.nodeIndex]!;
    chosen.set(layer, node);
    stack.push(...node.inputTensors);
  }
  return chosen;
}
