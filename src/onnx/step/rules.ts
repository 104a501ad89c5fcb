// The train-step compiler's rule table: for each Keras layer class, a small function that emits the layer's forward
// pass and returns its backward pass (the gradients of its inputs; its weights' gradients go through `ctx.grad`).
import type { Layer } from '../../backend/index.js';
import { A, bnAffine, FLOAT, pair } from '../graph.js';
import { isPointwise, TrainStepCompileError, windowOf, type StepBuilder, type Value, type Window } from './builder.js';
import { gatherBack, gatherTaps } from './gather.js';
import { depthwiseNchwc, nchwcFits, type NchwcTarget } from './nchwc.js';

/** A weight of the layer: a graph input when it trains, a constant otherwise. */
export interface WeightRef {
  name: string;
  shape: number[];
  trains: boolean;
}

/** Gradients of the layer's inputs (null where none is needed), given the gradient of its output. */
export type Backward = (dy: string) => (string | null)[];

export interface RuleContext {
  g: StepBuilder;
  layer: Layer;
  config: Record<string, unknown>;
  /** The layer's inputs. */
  xs: Value[];
  outShape: number[];
  /** Whether each input needs a gradient. */
  needs: boolean[];
  /** Whether the layer produces the tail's output. */
  isFinal: boolean;
  /**
   * `train`: the step's forward pass (batch statistics, dropout); `infer`: inference mode; `stats`: batch statistics
   * without dropout, each training BatchNormalization's batch mean and variance given out (precise BatchNorm).
   */
  mode: 'train' | 'infer' | 'stats';
  /** The NCHWc kernels' block and fold, or null for the portable lowering. */
  nchwc: NchwcTarget | null;
  weight(short: string): WeightRef;
  grad(weight: WeightRef, value: string): void;
  /** A moving statistic of a BatchNormalization that trains: its graph input and the name of its updated output. */
  state(short: string): { input: string; output: string };
  /** A batch statistic of a training BatchNormalization (`stats` mode): `value` becomes the graph output for it. */
  statistic(short: string, value: string): void;
  /** A Dropout layer's mask: a graph input of its output's shape, already scaled by 1 / (1 - rate). */
  mask(): string;
  /**
   * The scale and shift of the frozen BatchNormalization that alone reads this layer's output (with a linear
   * activation), which the layer then applies itself; null when there is none.
   */
  foldNorm(activation: string, channels: number): { scale: Float32Array; shift: Float32Array } | null;
  /** Whether this layer is a BatchNormalization folded into the layer before it. */
  folded: boolean;
  /** The classifier's softmax (one label per image) or sigmoid (several) input. */
  setLogits(v: Value, output: 'softmax' | 'sigmoid'): void;
}

export interface RuleResult {
  y: string;
  backward: Backward;
  /** Whether the layer has weights that train (its output then needs a gradient). */
  trains?: boolean;
}

type Rule = (ctx: RuleContext) => RuleResult;

const upstream = (ctx: RuleContext) => ctx.needs.some(Boolean);

/**
 * `dy` where `mask` holds and 0 elsewhere, as a multiply by the mask cast to float: ONNX Runtime threads Cast and Mul,
 * while its Where runs on one thread (1.9 against 2.7 ms over [16, 14, 14, 576] on 2 cores).
 */
const passWhere = (g: StepBuilder, mask: string, dy: string) => g.op('Mul', [g.op('Cast', [mask], [A.int('to', FLOAT)]), dy]);

/** Forward and backward of an activation by name (Keras's `activation` argument or an Activation/ReLU layer). */
function activation(g: StepBuilder, kind: { name: string; max?: number | null }, layer: Layer) {
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

/** A convolution's product of its input with the kernel, before bias and activation, and that product's backward. */
interface Product {
  pre: string;
  backward: (dz: string) => string | null;
}

/** Conv2D: im2col as one Gather ([N, ho, wo, K * c] in the kernel's [kh, kw, ci] order), then one matrix product. */
function convProduct(ctx: RuleContext, win: Window, kernel: WeightRef, kernel2: string, kernelGrad: (grad: string) => string): Product {
  const { g } = ctx;
  const x = ctx.xs[0]!;
  const co = kernel.shape[3]!;
  const rows = win.kh * win.kw * win.c;
  const pointwise = isPointwise(win);
  const cols = pointwise ? x.name : g.reshape(gatherTaps(g, x.name, win), [0, win.ho, win.wo, rows]);
  return {
    pre: g.op('MatMul', [cols, kernel2]),
    backward: (dz) => {
      if (kernel.trains) ctx.grad(kernel, kernelGrad(g.op('Gemm', [g.reshape(cols, [-1, rows]), g.reshape(dz, [-1, co])], [A.int('transA', 1)])));
      if (!upstream(ctx)) return null;
      const dcols = g.op('MatMul', [dz, g.transpose(kernel2, [1, 0])]);
      if (pointwise) return dcols;
      // col2im: each input position sums the tap gradients of the windows that read it.
      return g.reduceSum(gatherBack(g, dcols, win, win.ho * win.wo * win.kh * win.kw, [win.c], true), [3]);
    },
  };
}

/** DepthwiseConv2D with taps gathered side by side: one broadcast multiply and one reduction, [N, ho, wo, K, c(, m)]. */
function depthwiseGathered(ctx: RuleContext, win: Window, kernel: WeightRef, kt: string, m: number, kernelGrad: (grad: string) => string): Product {
  const { g } = ctx;
  const x = ctx.xs[0]!;
  const pointwise = isPointwise(win);
  const tapsOf = pointwise ? g.reshape(x.name, [0, win.ho, win.wo, 1, win.c]) : gatherTaps(g, x.name, win);
  const t = m === 1 ? tapsOf : g.op('Unsqueeze', [tapsOf, g.ints([5])]);
  const summed = g.reduceSum(g.op('Mul', [t, kt]), [3]);
  return {
    pre: m === 1 ? summed : g.reshape(summed, [0, win.ho, win.wo, win.c * m]),
    backward: (dz) => {
      const dz5 = m === 1 ? dz : g.reshape(dz, [0, win.ho, win.wo, win.c, m]);
      const dzTaps = g.op('Unsqueeze', [dz5, g.ints([3])]);
      if (kernel.trains) ctx.grad(kernel, kernelGrad(g.reduceSum(g.op('Mul', [t, dzTaps]), [0, 1, 2])));
      if (!upstream(ctx)) return null;
      // Each input position: the output gradients of the windows that read it, times the tap's weight.
      const back = pointwise ? dzTaps : gatherBack(g, dz5, win, win.ho * win.wo, m === 1 ? [win.c] : [win.c, m], false);
      return g.reduceSum(g.op('Mul', [back, kt]), m === 1 ? [3] : [3, 5]);
    },
  };
}

/**
 * Conv2D and DepthwiseConv2D: the product with the kernel (a frozen BatchNormalization after it folded into the
 * kernel and the bias), bias, activation.
 */
function convolution(ctx: RuleContext, depthwise: boolean): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  const kernel = ctx.weight(depthwise ? 'depthwise_kernel' : 'kernel');
  const bias = (config.useBias as boolean) ? ctx.weight('bias') : null;
  const kshape = kernel.shape;
  const win = windowOf(layer, x, kshape);
  const actName = (config.activation as string | undefined) ?? 'linear';
  const act = activation(g, { name: actName }, layer);
  const c = win.c;
  const k = win.kh * win.kw;
  const m = depthwise ? kshape[3]! : 1;
  const outChannels = depthwise ? c * m : kshape[3]!;
  const affine = ctx.foldNorm(actName, outChannels);
  // The normalization's scale against the kernel [kh, kw, ci, co] (depthwise: [kh, kw, c, m]) and the output.
  const scaleK = affine ? g.floats(`${layer.name}_folded_scale`, depthwise ? [c, m] : [outChannels], affine.scale) : null;
  // (Made only where a bias needs it: an unused initializer is a warning on every session.)
  const scaleOut = affine && bias ? (depthwise ? g.floats(`${layer.name}_folded_scale_out`, [outChannels], affine.scale) : scaleK!) : null;
  const scaled = (w: string, scale: string | null) => (scale ? g.op('Mul', [w, scale]) : w);
  const kernelGrad = (grad: string) => scaled(g.reshape(grad, kshape), scaleK);
  let product: Product;
  if (!depthwise) {
    product = convProduct(ctx, win, kernel, scaled(g.reshape(kernel.name, [k * c, kshape[3]!]), scaleK), kernelGrad);
  } else if (m === 1 && ctx.nchwc !== null && nchwcFits(win)) {
    const dw = depthwiseNchwc(g, x.name, win, scaled(g.reshape(kernel.name, [k, c, 1]), scaleK), ctx.nchwc);
    product = {
      pre: dw.y,
      backward: (dz) => {
        const { dx, dw: grad } = dw.backward(dz, { input: upstream(ctx), kernel: kernel.trains });
        if (grad !== null) ctx.grad(kernel, kernelGrad(grad));
        return dx;
      },
    };
  } else {
    // The kernel as [K, c] (or [K, c, m]), broadcast against the taps' last axes.
    const kt = g.reshape(scaled(g.reshape(kernel.name, [k, c, m]), scaleK), m === 1 ? [k, c] : [k, c, m]);
    product = depthwiseGathered(ctx, win, kernel, kt, m, kernelGrad);
  }
  const shift = affine ? g.floats(`${layer.name}_folded_shift`, [outChannels], affine.shift) : null;
  const offset = bias && shift ? g.op('Add', [g.op('Mul', [bias.name, scaleOut!]), shift]) : (bias?.name ?? shift);
  const biased = offset ? g.op('Add', [product.pre, offset]) : product.pre;
  const y = act.forward(biased);
  return {
    y,
    trains: kernel.trains || bias?.trains === true,
    backward: (dy) => {
      const dz = act.backward(dy, biased, y);
      if (bias?.trains) ctx.grad(bias, scaled(g.reduceSum(dz, [0, 1, 2]), scaleOut));
      return [product.backward(dz)];
    },
  };
}

function dense(ctx: RuleContext): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  if (x.shape.length !== 2) throw new TrainStepCompileError(`${layer.name}: Dense on a rank-${x.shape.length} input has no gradient rule.`);
  const kernel = ctx.weight('kernel');
  const bias = (config.useBias as boolean) ? ctx.weight('bias') : null;
  const act = (config.activation as string | undefined) ?? 'linear';
  const pre = g.op('MatMul', [x.name, kernel.name]);
  const z = bias ? g.op('Add', [pre, bias.name]) : pre;
  const trains = kernel.trains || bias?.trains === true;
  const backZ = (dz: string) => {
    if (kernel.trains) ctx.grad(kernel, g.op('Gemm', [x.name, dz], [A.int('transA', 1)]));
    if (bias?.trains) ctx.grad(bias, g.reduceSum(dz, [0]));
    return upstream(ctx) ? g.op('Gemm', [dz, kernel.name], [A.int('transB', 1)]) : null;
  };
  if (act === 'softmax') {
    if (!ctx.isFinal) throw new TrainStepCompileError(`${layer.name}: softmax is supported only as the classifier's output.`);
    ctx.setLogits({ name: z, shape: ctx.outShape }, 'softmax');
    return { y: g.op('Softmax', [z], [A.int('axis', -1)]), trains, backward: (dz) => [backZ(dz)] };
  }
  if (act === 'sigmoid' && ctx.isFinal) {
    // A multi-label classifier's output: the loss gives the gradient with respect to its logits, as for softmax.
    ctx.setLogits({ name: z, shape: ctx.outShape }, 'sigmoid');
    return { y: g.op('Sigmoid', [z]), trains, backward: (dz) => [backZ(dz)] };
  }
  const a = activation(g, { name: act }, layer);
  const y = a.forward(z);
  return { y, trains, backward: (dy) => [backZ(a.backward(dy, z, y))] };
}

function batchNormalization(ctx: RuleContext): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  const c = x.shape[x.shape.length - 1]!;
  if (ctx.folded) {
    // Already applied by the convolution before it.
    return { y: x.name, backward: (dy) => [upstream(ctx) ? dy : null] };
  }
  if (!layer.trainable) {
    const { scale, shift } = bnAffine(layer, c);
    const s = g.floats(`${layer.name}_scale`, [c], scale);
    return { y: g.op('Add', [g.op('Mul', [x.name, s]), g.floats(`${layer.name}_shift`, [c], shift)]), backward: (dy) => [upstream(ctx) ? g.op('Mul', [dy, s]) : null] };
  }
  if (((config.axis as number | undefined) ?? -1) !== -1 && config.axis !== x.shape.length - 1) throw new TrainStepCompileError(`${layer.name}: BatchNormalization over axis ${String(config.axis)} has no gradient rule.`);
  const eps = (config.epsilon as number | undefined) ?? 1e-3;
  const momentum = (config.momentum as number | undefined) ?? 0.99;
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const gamma = (config.scale as boolean | undefined) !== false ? ctx.weight('gamma') : null;
  const beta = (config.center as boolean | undefined) !== false ? ctx.weight('beta') : null;
  const trains = gamma?.trains === true || beta?.trains === true;
  const affine = (xhat: string) => {
    const scaled = gamma ? g.op('Mul', [xhat, gamma.name]) : xhat;
    return beta ? g.op('Add', [scaled, beta.name]) : scaled;
  };
  if (ctx.mode === 'infer') {
    // Inference mode: the moving statistics normalise.
    const movingMean = ctx.state('moving_mean');
    const movingVariance = ctx.state('moving_variance');
    const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [movingVariance.input, g.f(eps)])])]);
    return { y: affine(g.op('Mul', [g.op('Sub', [x.name, movingMean.input]), rstd])), trains, backward: () => [null] };
  }
  // Training mode: batch statistics (biased variance, as tf.moments), their full gradient, and the moving averages
  // updated as tfjs-layers does (moving -= (moving - batch) * (1 - momentum)).
  const mean = g.op('ReduceMean', [x.name], [A.ints('axes', axes), A.int('keepdims', 1)]);
  const centred = g.op('Sub', [x.name, mean]);
  const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred])], [A.ints('axes', axes), A.int('keepdims', 1)]);
  const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.f(eps)])])]);
  const xhat = g.op('Mul', [centred, rstd]);
  const y = affine(xhat);
  if (ctx.mode === 'stats') {
    ctx.statistic('moving_mean', g.reshape(mean, [c]));
    ctx.statistic('moving_variance', g.reshape(variance, [c]));
    return { y, trains, backward: () => [null] };
  }
  const update = (entry: { input: string; output: string }, batch: string) => g.node('Sub', [entry.input, g.op('Mul', [g.op('Sub', [entry.input, g.reshape(batch, [c])]), g.f(1 - momentum)])], 'moving', [], entry.output);
  update(ctx.state('moving_mean'), mean);
  update(ctx.state('moving_variance'), variance);
  return {
    y,
    trains,
    backward: (dy) => {
      if (gamma?.trains) ctx.grad(gamma, g.reduceSum(g.op('Mul', [dy, xhat]), axes));
      if (beta?.trains) ctx.grad(beta, g.reduceSum(dy, axes));
      if (!upstream(ctx)) return [null];
      const dxhat = gamma ? g.op('Mul', [dy, gamma.name]) : dy;
      const meanOf = (t: string) => g.op('ReduceMean', [t], [A.ints('axes', axes), A.int('keepdims', 1)]);
      return [g.op('Mul', [rstd, g.op('Sub', [g.op('Sub', [dxhat, meanOf(dxhat)]), g.op('Mul', [xhat, meanOf(g.op('Mul', [dxhat, xhat]))])])])];
    },
  };
}

function activationLayer(ctx: RuleContext): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  const isRelu = layer.getClassName() === 'ReLU';
  const name = isRelu ? 'relu' : (config.activation as string);
  if (isRelu && (((config.negativeSlope as number | undefined) ?? 0) !== 0 || ((config.threshold as number | undefined) ?? 0) !== 0)) {
    throw new TrainStepCompileError(`${layer.name}: ReLU with a negative slope or threshold has no gradient rule.`);
  }
  if (name === 'softmax') {
    if (!ctx.isFinal) throw new TrainStepCompileError(`${layer.name}: softmax is supported only as the classifier's output.`);
    ctx.setLogits(x, 'softmax');
    return { y: g.op('Softmax', [x.name], [A.int('axis', -1)]), backward: (dz) => [dz] };
  }
  const a = activation(g, { name, max: isRelu ? ((config.maxValue as number | null | undefined) ?? null) : undefined }, layer);
  const y = a.forward(x.name);
  return { y, backward: (dy) => [upstream(ctx) ? a.backward(dy, x.name, y) : null] };
}

function globalAveragePooling(ctx: RuleContext): RuleResult {
  const { g, config } = ctx;
  const x = ctx.xs[0]!;
  const keep = (config.keepdims as boolean | undefined) === true;
  const [, h, w, c] = x.shape as [number, number, number, number];
  return {
    y: g.op('ReduceMean', [x.name], [A.ints('axes', [1, 2]), A.int('keepdims', keep ? 1 : 0)]),
    backward: (dy) => [upstream(ctx) ? g.op('Expand', [g.op('Mul', [keep ? dy : g.reshape(dy, [0, 1, 1, c]), g.f(1 / (h * w))]), g.ints([1, h, w, 1])]) : null],
  };
}

function dropout(ctx: RuleContext): RuleResult {
  const x = ctx.xs[0]!;
  if (((ctx.config.rate as number | undefined) ?? 0) === 0 || ctx.mode !== 'train') return { y: x.name, backward: (dy) => [upstream(ctx) ? dy : null] };
  const mask = ctx.mask();
  return { y: ctx.g.op('Mul', [x.name, mask]), backward: (dy) => [upstream(ctx) ? ctx.g.op('Mul', [dy, mask]) : null] };
}

function multiply(ctx: RuleContext): RuleResult {
  const { g, layer, xs, outShape } = ctx;
  if (xs.length !== 2 || xs.some((v) => v.shape.length !== outShape.length)) throw new TrainStepCompileError(`${layer.name}: Multiply of ${xs.length} inputs of different ranks has no gradient rule.`);
  const [a, b] = xs as [Value, Value];
  // Each factor's gradient, summed over the axes it was broadcast along (squeeze-excite's [N,1,1,C]).
  const reduceTo = (t: string, shape: number[]) => {
    const axes = shape.flatMap((d, i) => (i > 0 && d === 1 && outShape[i] !== 1 ? [i] : []));
    return axes.length === 0 ? t : g.reduceSum(t, axes, true);
  };
  return {
    y: g.op('Mul', [a.name, b.name]),
    backward: (dy) => [ctx.needs[0] ? reduceTo(g.op('Mul', [dy, b.name]), a.shape) : null, ctx.needs[1] ? reduceTo(g.op('Mul', [dy, a.name]), b.shape) : null],
  };
}

function concatenate(ctx: RuleContext): RuleResult {
  const { g, xs, config, outShape } = ctx;
  const rank = outShape.length;
  const given = (config.axis as number | undefined) ?? -1;
  const axis = given < 0 ? rank + given : given;
  return {
    y: g.op('Concat', xs.map((v) => v.name), [A.int('axis', axis)]),
    backward: (dy) => {
      const parts = xs.map(() => g.fresh('part'));
      g.nodes.push({ opType: 'Split', input: [dy, g.int64s('split', xs.map((v) => v.shape[axis]!))], output: parts, name: g.fresh('split'), attribute: [A.int('axis', axis)] });
      return ctx.needs.map((need, k) => (need ? parts[k]! : null));
    },
  };
}

function maxPooling(ctx: RuleContext): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  const win = windowOf(layer, x, pair(config.poolSize as number | number[], 2));
  const cols = gatherTaps(g, x.name, win, -3.4e38);
  return {
    y: g.op('ReduceMax', [cols], [A.ints('axes', [3]), A.int('keepdims', 0)]),
    backward: (dy) => {
      if (!upstream(ctx)) return [null];
      // The gradient goes to the first maximum of each window in row-major order, as tfjs's MaxPoolGrad routes it
      // (ArgMax picks the first of equal values).
      const first = g.op('ArgMax', [cols], [A.int('axis', 3), A.int('keepdims', 0), A.int('select_last_index', 0)]);
      const hot = g.op('OneHot', [first, g.int64s('depth', [win.kh * win.kw]), g.floats('onehot_values', [2], Float32Array.of(0, 1))], [A.int('axis', 3)]);
      const perTap = g.op('Mul', [hot, g.op('Unsqueeze', [dy, g.ints([3])])]);
      return [g.reduceSum(gatherBack(g, perTap, win, win.ho * win.wo * win.kh * win.kw, [win.c], true), [3])];
    },
  };
}

function averagePooling(ctx: RuleContext): RuleResult {
  const { g, layer, config } = ctx;
  const x = ctx.xs[0]!;
  const win = windowOf(layer, x, pair(config.poolSize as number | number[], 2));
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
  return {
    y: g.op('Mul', [g.reduceSum(gatherTaps(g, x.name, win), [3]), inv]),
    backward: (dy) => [upstream(ctx) ? g.reduceSum(gatherBack(g, g.op('Mul', [dy, inv]), win, win.ho * win.wo, [win.c], false), [3]) : null],
  };
}

const identityBackward = (ctx: RuleContext): Backward => (dy) => [upstream(ctx) ? dy : null];

/** Each layer class the compiler can differentiate, and its rule. */
export const RULES: Readonly<Record<string, Rule>> = {
  Conv2D: (ctx) => convolution(ctx, false),
  DepthwiseConv2D: (ctx) => convolution(ctx, true),
  Dense: dense,
  BatchNormalization: batchNormalization,
  ReLU: activationLayer,
  Activation: activationLayer,
  Add: (ctx) => ({ y: ctx.g.add(ctx.xs.map((v) => v.name)), backward: (dy) => ctx.needs.map((need) => (need ? dy : null)) }),
  ZeroPadding2D: (ctx) => {
    const p = ctx.config.padding as [[number, number], [number, number]];
    const x = ctx.xs[0]!;
    return { y: ctx.g.pad(x.name, [p[0][0], p[1][0], p[0][1], p[1][1]]), backward: (dy) => [upstream(ctx) ? ctx.g.slice2d(dy, [p[0][0], p[1][0]], [p[0][0] + x.shape[1]!, p[1][0] + x.shape[2]!]) : null] };
  },
  GlobalAveragePooling2D: globalAveragePooling,
  Dropout: dropout,
  Flatten: (ctx) => ({ y: ctx.g.reshape(ctx.xs[0]!.name, [0, ...ctx.outShape.slice(1)]), backward: (dy) => [upstream(ctx) ? ctx.g.reshape(dy, [0, ...ctx.xs[0]!.shape.slice(1)]) : null] }),
  Reshape: (ctx) => RULES.Flatten!(ctx),
  Multiply: multiply,
  TFOpLambda: (ctx) => {
    const operand = ctx.config.operand as number;
    const x = ctx.xs[0]!.name;
    if (ctx.config.op === 'add') return { y: ctx.g.op('Add', [x, ctx.g.f(operand)]), backward: identityBackward(ctx) };
    return { y: ctx.g.op('Mul', [x, ctx.g.f(operand)]), backward: (dy) => [upstream(ctx) ? ctx.g.op('Mul', [dy, ctx.g.f(operand)]) : null] };
  },
  Rescaling: (ctx) => {
    const scale = ctx.config.scale as number;
    return { y: ctx.g.op('Add', [ctx.g.op('Mul', [ctx.xs[0]!.name, ctx.g.f(scale)]), ctx.g.f((ctx.config.offset as number | undefined) ?? 0)]), backward: (dy) => [upstream(ctx) ? ctx.g.op('Mul', [dy, ctx.g.f(scale)]) : null] };
  },
  Concatenate: concatenate,
  MaxPooling2D: maxPooling,
  AveragePooling2D: averagePooling,
};
