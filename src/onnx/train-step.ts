// Compiles the trainable tail of a cut (a LayersModel whose inputs are the boundary tensors) into one ONNX graph per
// optimizer step: forward, the chain rule layer by layer, and the optimizer update, in ONNX operators (no training
// ops); or into its forward pass alone, for evaluation. Tensors stay NHWC as Keras holds them. Each layer class has a
// rule (step/rules.ts); windows are read through constant index tables (step/gather.ts), except depthwise
// convolutions where ONNX Runtime's blocked-channel CPU kernels are available (step/nchwc.ts).
import type { onnx as P } from 'onnx-proto';
import { EPSILON } from '../backend/epsilon.js';
import type { Layer, LayersModel, SymbolicTensor } from '../backend/index.js';
import { A, bnAffine, FLOAT, INT64, onnx, OPSET } from './graph.js';
import { StepBuilder, TrainStepCompileError, type Value } from './step/builder.js';
import type { NchwcTarget } from './step/nchwc.js';
import { RULES, type Backward, type RuleContext, type WeightRef } from './step/rules.js';

export { TrainStepCompileError } from './step/builder.js';
export type { NchwcTarget } from './step/nchwc.js';

export interface TrainStepOptions {
  optimizer: 'adam' | 'sgd' | 'rmsprop';
  /** SGD and RMSprop momentum. */
  momentum: number;
  nesterov: boolean;
  labelSmoothing: number;
  /** Mixup and CutMix: each batch's targets come as an input (smoothing applied) instead of from its labels. */
  softTargets?: boolean;
  /** Several labels per image (a sigmoid output): the 0/1 target row of each label set and the positives' weights. */
  multiLabel?: { targets: Float32Array; posWeights: number[] | null } | null;
  /**
   * Discriminative rates: each weight's multiple of the step's rate, by its tfjs variable name (`--lr-decay-per-block`);
   * a weight not named trains at the rate itself. Weight decay takes the weight's rate too, as in a param group.
   */
  lrScales?: Record<string, number> | null;
  /** Decoupled weight decay applied before each update (w <- w * (1 - lr * decay)), as tl's tfjs engine does. */
  weightDecay: number;
  /** Also return each trainable weight's gradient (checks against TensorFlow.js). */
  emitGradients?: boolean;
  /** Depthwise convolutions on ONNX Runtime's NCHWc CPU kernels (see step/nchwc.ts); absent: the portable lowering. */
  nchwc?: NchwcTarget | null;
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

/** A non-trainable weight the graph reads as an input (BatchNormalization's moving statistics with `--bn train`). */
export interface StateSpec {
  variable: string;
  shape: number[];
  input: string;
  /** Its updated value (the train step's moving averages). */
  output: string;
}

export interface TrainStepGraph {
  bytes: Uint8Array;
  /** Graph inputs of the boundary tensors, in the tail's input order (NHWC, any batch size up to `maxBatch`). */
  boundary: string[];
  /** The largest batch the graph takes (null: any). */
  maxBatch: number | null;
  /**
   * The one batch size the graph takes, where it has one: a short batch is padded to it with zero rows of sample
   * weight 0, which add nothing to the loss, the count correct or any gradient (rows meet only in training-mode
   * BatchNormalization, which a graph with a fixed batch has none of).
   */
  fixedBatch: number | null;
  /** Dropout layers' mask inputs: each the layer output's shape, already scaled by 1 / (1 - rate). */
  masks: { layer: string; input: string; shape: number[] }[];
  trainable: TrainableSpec[];
  /** Non-trainable weights the step updates (BatchNormalization's moving statistics with `--bn train`). */
  state: StateSpec[];
  /** int64 [N] labels, float [N] per-image loss weights, float scalars lr and step (1-based, for Adam). */
  /** Per-step inputs; `targets` (float [n, classes]) only in a step compiled for soft targets (mixup, CutMix). */
  inputs: { labels: string; sampleWeights: string; lr: string; step: string; targets?: string };
  /** Scalar outputs: the loss, the number correct, and the sum of every updated weight (finite iff they all are). */
  outputs: { loss: string; correct: string; weightsSum: string };
  /** Layers whose windows run on the NCHWc kernels. */
  nchwcLayers: string[];
}

/** The tail's forward pass in inference mode, its trainable weights and moving statistics read as graph inputs. */
export interface ForwardGraph {
  bytes: Uint8Array;
  boundary: string[];
  trainable: Pick<TrainableSpec, 'variable' | 'shape' | 'input'>[];
  state: Pick<StateSpec, 'variable' | 'shape' | 'input'>[];
  /** [N, classes] probabilities. */
  probs: string;
  nchwcLayers: string[];
}

const PROB_MIN = EPSILON;
const PROB_MAX = 1 - EPSILON;

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

const shortName = (originalName: string) => originalName.split('/').pop()!.replace(/:0$/, '');

/** The graph being built: its builder, inputs and outputs, and what the rules declared. */
class TailGraph {
  readonly g = new StepBuilder();
  readonly inputs: P.IValueInfoProto[] = [];
  readonly outputs: P.IValueInfoProto[] = [];
  readonly trainable: TrainableSpec[] = [];
  readonly state: StateSpec[] = [];
  readonly masks: TrainStepGraph['masks'] = [];
  readonly grads = new Map<string, string>();
  readonly nchwcLayers: string[] = [];
  /** Batch statistics given out (`stats` mode): the moving statistic's variable and its output. */
  readonly statistics: { variable: string; shape: number[]; output: string }[] = [];

  private static dims(shape: number[]) {
    return { dim: shape.map((d) => (d < 0 ? { dimParam: 'N' } : { dimValue: d })) };
  }
  addInput(name: string, shape: number[], type = FLOAT): string {
    this.inputs.push({ name, type: { tensorType: { elemType: type, shape: TailGraph.dims(shape) } } });
    return name;
  }
  addOutput(name: string, shape: number[]): void {
    this.outputs.push({ name, type: { tensorType: { elemType: FLOAT, shape: TailGraph.dims(shape) } } });
  }
  encode(name: string): Uint8Array {
    const opsetImport = [{ domain: '', version: OPSET }, ...[...this.g.domains].map((domain) => ({ domain, version: 1 }))];
    const proto = onnx.ModelProto.create({ irVersion: 7, producerName: 'tl', opsetImport, graph: { name, node: this.g.nodes, initializer: this.g.initializers, input: this.inputs, output: this.outputs } });
    return onnx.ModelProto.encode(proto).finish();
  }
}

/**
 * Emits the tail's forward pass through the rule table: its output's value, the boundary inputs, and the tape of
 * backward passes (last layer last) with the tensors each reads and writes.
 */
function emitForward(tail: LayersModel, graph: TailGraph, mode: RuleContext['mode'], nchwc: NchwcTarget | null) {
  const { g } = graph;
  const values = new Map<number, Value>();
  const needsGrad = new Map<number, boolean>();
  const shapeOf = (t: SymbolicTensor) => t.shape.map((d) => (d === null ? -1 : d));
  const boundary = tail.inputs.map((t, i) => {
    const name = graph.addInput(`boundary_${i}`, shapeOf(t));
    values.set(t.id, { name, shape: shapeOf(t) });
    needsGrad.set(t.id, false);
    return name;
  });
  const outputTensor = tail.outputs[0]!;
  if (tail.outputs.length !== 1) throw new TrainStepCompileError('The tail must have one output (the classifier).');
  let logits: Value | null = null;
  let output = 'softmax' as 'softmax' | 'sigmoid';
  const tape: { inputs: SymbolicTensor[]; output: SymbolicTensor; backward: Backward }[] = [];

  const nodes = nodesOf(tail);
  // A convolution whose only reader is a frozen BatchNormalization takes the normalization into its kernel and bias
  // (a per-channel scale of a small weight tensor instead of a multiply over the whole activation, forward and back);
  // the normalization layer then passes its input through.
  const readers = new Map<number, Layer[]>();
  for (const [layer, node] of nodes) for (const t of node.inputTensors) readers.set(t.id, [...(readers.get(t.id) ?? []), layer]);
  const folded = new Set<Layer>();

  for (const layer of tail.layers) {
    const cls = layer.getClassName();
    if (cls === 'InputLayer') continue;
    const node = nodes.get(layer);
    if (!node) continue;
    const rule = RULES[cls];
    if (!rule) throw new TrainStepCompileError(`${layer.name}: layer class ${cls} has no gradient rule.`);
    const ins = node.inputTensors;
    const out = node.outputTensors[0]!;
    const xs = ins.map((t) => values.get(t.id));
    if (xs.some((v) => v === undefined)) throw new TrainStepCompileError(`${layer.name}: its input was not computed (the tail is not in order).`);
    const outShape = shapeOf(out);
    const ctx: RuleContext = {
      g, layer, mode, nchwc, outShape,
      config: layer.getConfig() as Record<string, unknown>,
      xs: xs as Value[],
      needs: ins.map((t) => needsGrad.get(t.id) === true),
      isFinal: out.id === outputTensor.id,
      folded: folded.has(layer),
      weight: (short) => {
        const w = layer.weights.find((v) => shortName(v.originalName) === short);
        if (!w) throw new TrainStepCompileError(`${layer.name}: no weight '${short}'.`);
        const shape = w.shape as number[];
        if (!layer.trainable || !w.trainable) return { name: g.floats(`${layer.name}_${short}`, shape, w.read().dataSync() as Float32Array), shape, trains: false };
        const input = graph.addInput(`w${graph.trainable.length}_${layer.name}_${short}`, shape);
        graph.trainable.push({ variable: w.originalName, shape, input, output: `${input}_new`, gradient: null, slots: [] });
        return { name: input, shape, trains: true };
      },
      grad: (weight: WeightRef, value: string) => graph.grads.set(weight.name, value),
      state: (short) => {
        const w = layer.weights.find((v) => shortName(v.originalName) === short)!;
        const shape = w.shape as number[];
        const input = graph.addInput(`state${graph.state.length}_${layer.name}_${short}`, shape);
        const entry = { variable: w.originalName, shape, input, output: `${input}_new` };
        graph.state.push(entry);
        if (mode === 'train') graph.addOutput(entry.output, shape);
        return entry;
      },
      statistic: (short, value) => {
        const w = layer.weights.find((v) => shortName(v.originalName) === short)!;
        const output = `${layer.name}_batch_${short}`;
        g.node('Identity', [value], 'statistic', [], output);
        graph.statistics.push({ variable: w.originalName, shape: w.shape as number[], output });
        graph.addOutput(output, w.shape as number[]);
      },
      mask: () => {
        const input = graph.addInput(`mask_${layer.name}`, outShape);
        graph.masks.push({ layer: layer.name, input, shape: outShape });
        return input;
      },
      foldNorm: (activationName, channels) => {
        const next = readers.get(out.id);
        if (activationName !== 'linear' || out.id === outputTensor.id || next?.length !== 1) return null;
        const bn = next[0]!;
        const axis = (bn.getConfig() as { axis?: number }).axis ?? -1;
        if (bn.getClassName() !== 'BatchNormalization' || bn.trainable || (axis !== -1 && axis !== out.shape.length - 1)) return null;
        folded.add(bn);
        return bnAffine(bn, channels);
      },
      setLogits: (v, kind) => {
        logits = v;
        output = kind;
      },
    };
    const nodesBefore = g.nodes.length;
    const result = rule(ctx);
    if (g.nodes.slice(nodesBefore).some((n) => n.domain)) graph.nchwcLayers.push(layer.name);
    values.set(out.id, { name: result.y, shape: outShape });
    needsGrad.set(out.id, ctx.needs.some(Boolean) || result.trains === true);
    tape.push({ inputs: ins, output: out, backward: result.backward });
  }
  if (logits === null) throw new TrainStepCompileError(`The tail's output ('${outputTensor.sourceLayer.name}') must be a softmax or a sigmoid Dense layer: tl trains classifiers.`);
  return { boundary, tape, probs: values.get(outputTensor.id)!, outputTensor, output };
}

/**
 * What every loss reads: the per-step inputs (labels, sample weights, rate, step number); the batch's real rows (a
 * padded row has weight 0) and their count; the probabilities clipped as Keras clips them, and where the clip passes
 * the gradient (tfjs passes it where min <= p <= max).
 */
function lossCommon(graph: TailGraph, probs: string) {
  const { g } = graph;
  const labels = graph.addInput('labels', [-1], INT64);
  const sampleWeights = graph.addInput('sample_weights', [-1]);
  const lr = graph.addInput('lr', []);
  const step = graph.addInput('step', []);
  const real = g.op('Greater', [sampleWeights, g.f(0)]);
  const count = g.reduceSum(g.op('Cast', [real], [A.int('to', FLOAT)]), [0]);
  const clipped = g.op('Clip', [probs, g.f(PROB_MIN), g.f(PROB_MAX)]);
  const inRange = g.op('Cast', [g.op('And', [g.op('Not', [g.op('Less', [probs, g.f(PROB_MIN)])]), g.op('Not', [g.op('Greater', [probs, g.f(PROB_MAX)])])])], [A.int('to', FLOAT)]);
  return { labels, sampleWeights, lr, step, real, count, clipped, inRange };
}

/**
 * Keras's categorical cross-entropy of clipped probabilities (smoothed targets, per-image weights, the mean over the
 * batch's real rows) as the `loss` and `correct` outputs, and its gradient with respect to the logits.
 */
function emitLoss(graph: TailGraph, probsValue: { name: string; shape: number[] }, options: TrainStepOptions): { inputs: TrainStepGraph['inputs']; dLogits: string } {
  const { g } = graph;
  const probs = probsValue.name;
  const classes = probsValue.shape[1]!;
  const { labels, sampleWeights, lr, step, real, count, clipped, inRange } = lossCommon(graph, probs);
  const targets = options.softTargets ? graph.addInput('targets', [-1, classes]) : null;
  let target = targets ?? g.op('OneHot', [labels, g.int64s('depth', [classes]), g.floats('onehot_values', [2], Float32Array.of(0, 1))], [A.int('axis', -1)]);
  if (options.labelSmoothing > 0 && !targets) target = g.op('Add', [g.op('Mul', [target, g.f(1 - options.labelSmoothing)]), g.f(options.labelSmoothing / classes)]);
  const perImage = g.op('Neg', [g.reduceSum(g.op('Mul', [target, g.op('Log', [clipped])]), [1])]);
  // The batch's images are its rows of positive weight (class weights are positive): the loss is their mean, as
  // Keras's over a batch of that size.
  g.node('Div', [g.reduceSum(g.op('Mul', [perImage, sampleWeights]), [0]), count], 'loss', [], 'loss');
  const predicted = g.op('ArgMax', [probs], [A.int('axis', 1), A.int('keepdims', 0)]);
  g.node('ReduceSum', [g.op('Cast', [g.op('And', [g.op('Equal', [predicted, labels]), real])], [A.int('to', FLOAT)])], 'correct', [A.int('keepdims', 0)], 'correct');
  graph.addOutput('loss', []);
  graph.addOutput('correct', []);

  // d loss / d probs through the clip (tfjs passes the gradient where min <= p <= max), then the softmax.
  const weightPerImage = g.op('Unsqueeze', [g.op('Div', [sampleWeights, count]), g.ints([1])]);
  const dProbs = g.op('Mul', [g.op('Neg', [g.op('Div', [g.op('Mul', [target, weightPerImage]), clipped])]), inRange]);
  const dLogits = g.op('Mul', [probs, g.op('Sub', [dProbs, g.reduceSum(g.op('Mul', [dProbs, probs]), [1], true)])]);
  return { inputs: { labels, sampleWeights, lr, step, ...(targets ? { targets } : {}) }, dLogits };
}

/**
 * Several labels per image: Keras's binary cross-entropy of clipped sigmoid outputs (the mean over labels, positives
 * weighted by `posWeights`, targets smoothed towards 1/2), the mean over the batch's real rows, as the `loss` output;
 * `correct` counts the rows whose every output is on its target's side of 0.5. `labels` number label sets: each is
 * a row of `targets`, gathered in the graph, so the batches feed as single-label ones do.
 */
function emitBinaryLoss(graph: TailGraph, probsValue: { name: string; shape: number[] }, smoothing: number, multi: { targets: Float32Array; posWeights: number[] | null }): { inputs: TrainStepGraph['inputs']; dLogits: string } {
  const { g } = graph;
  const probs = probsValue.name;
  const classes = probsValue.shape[1]!;
  const { labels, sampleWeights, lr, step, real, count, clipped, inRange } = lossCommon(graph, probs);
  const hard = g.op('Gather', [g.floats('target_rows', [multi.targets.length / classes, classes], multi.targets), labels], [A.int('axis', 0)]);
  const target = smoothing > 0 ? g.op('Add', [g.op('Mul', [hard, g.f(1 - smoothing)]), g.f(smoothing / 2)]) : hard;
  const oneMinusTarget = g.op('Sub', [g.f(1), target]);
  const oneMinusClipped = g.op('Sub', [g.f(1), clipped]);
  const posWeights = multi.posWeights ? g.floats('pos_weights', [classes], Float32Array.from(multi.posWeights)) : null;
  const weightedTarget = posWeights ? g.op('Mul', [target, posWeights]) : target;
  const perLabel = g.op('Add', [g.op('Mul', [weightedTarget, g.op('Log', [clipped])]), g.op('Mul', [oneMinusTarget, g.op('Log', [oneMinusClipped])])]);
  const perImage = g.op('Neg', [g.op('Mul', [g.reduceSum(perLabel, [1]), g.f(1 / classes)])]);
  g.node('Div', [g.reduceSum(g.op('Mul', [perImage, sampleWeights]), [0]), count], 'loss', [], 'loss');
  const wrong = g.reduceSum(g.op('Abs', [g.op('Sub', [g.op('Cast', [g.op('Greater', [probs, g.f(0.5)])], [A.int('to', FLOAT)]), hard])]), [1]);
  g.node('ReduceSum', [g.op('Cast', [g.op('And', [g.op('Equal', [wrong, g.f(0)]), real])], [A.int('to', FLOAT)])], 'correct', [A.int('keepdims', 0)], 'correct');
  graph.addOutput('loss', []);
  graph.addOutput('correct', []);

  // d loss / d probs through the clip (passed where min <= p <= max, as tfjs does), then the sigmoid: p (1 - p).
  const weightPerImage = g.op('Unsqueeze', [g.op('Mul', [g.op('Div', [sampleWeights, count]), g.f(1 / classes)]), g.ints([1])]);
  const dPerLabel = g.op('Sub', [g.op('Div', [oneMinusTarget, oneMinusClipped]), g.op('Div', [weightedTarget, clipped])]);
  const dProbs = g.op('Mul', [g.op('Mul', [dPerLabel, weightPerImage]), inRange]);
  const dLogits = g.op('Mul', [dProbs, g.op('Mul', [probs, g.op('Sub', [g.f(1), probs])])]);
  return { inputs: { labels, sampleWeights, lr, step }, dLogits };
}

/** The chain rule over the tape, last layer first; a tensor used by several layers gets the sum of their gradients. */
function backpropagate(graph: TailGraph, tape: ReturnType<typeof emitForward>['tape'], outputId: number, dLogits: string): void {
  const pending = new Map<number, string[]>([[outputId, [dLogits]]]);
  for (let i = tape.length - 1; i >= 0; i--) {
    const entry = tape[i]!;
    const parts = pending.get(entry.output.id);
    if (!parts) continue;
    const dy = graph.g.add(parts);
    entry.backward(dy).forEach((dx, k) => {
      if (dx === null) return;
      const id = entry.inputs[k]!.id;
      pending.set(id, [...(pending.get(id) ?? []), dx]);
    });
  }
}

const ADAM = { b1: 0.9, b2: 0.999, eps: 1e-7 };

/**
 * The step of one weight under the optimizer (what the update subtracts), with the optimizer's slots as graph inputs
 * and outputs, exactly as tfjs applies it.
 */
function optimizerStep(graph: TailGraph, spec: TrainableSpec, grad: string, options: TrainStepOptions, at: { lr: string; oneMinusB1t: string; oneMinusB2t: string }): string {
  const { g } = graph;
  const { lr } = at;
  const eps = ADAM.eps;
  const slot = (kind: TrainableSpec['slots'][number]['kind']) => {
    const s = { kind, input: graph.addInput(`${spec.input}_${kind}`, spec.shape), output: `${spec.input}_${kind}_new` };
    spec.slots.push(s);
    graph.addOutput(s.output, spec.shape);
    return s;
  };
  if (options.optimizer === 'adam') {
    const m = slot('m');
    const v = slot('v');
    g.node('Add', [g.op('Mul', [m.input, g.f(ADAM.b1)]), g.op('Mul', [grad, g.f(1 - ADAM.b1)])], 'm', [], m.output);
    g.node('Add', [g.op('Mul', [v.input, g.f(ADAM.b2)]), g.op('Mul', [g.op('Mul', [grad, grad]), g.f(1 - ADAM.b2)])], 'v', [], v.output);
    const mHat = g.op('Div', [m.output, at.oneMinusB1t]);
    const vHat = g.op('Div', [v.output, at.oneMinusB2t]);
    return g.op('Mul', [g.op('Div', [mHat, g.op('Add', [g.op('Sqrt', [vHat]), g.f(eps)])]), lr]);
  }
  if (options.optimizer === 'rmsprop') {
    const ms = slot('ms');
    const mom = slot('mom');
    g.node('Add', [g.op('Mul', [ms.input, g.f(0.9)]), g.op('Mul', [g.op('Mul', [grad, grad]), g.f(1 - 0.9)])], 'ms', [], ms.output);
    g.node('Add', [g.op('Mul', [mom.input, g.f(options.momentum)]), g.op('Div', [g.op('Mul', [grad, lr]), g.op('Sqrt', [g.op('Add', [ms.output, g.f(eps)])])])], 'mom', [], mom.output);
    return mom.output;
  }
  if (options.momentum > 0 || options.nesterov) {
    const accum = slot('accum');
    g.node('Add', [g.op('Mul', [accum.input, g.f(options.momentum)]), grad], 'accum', [], accum.output);
    const direction = options.nesterov ? g.op('Add', [grad, g.op('Mul', [accum.output, g.f(options.momentum)])]) : accum.output;
    return g.op('Mul', [direction, lr]);
  }
  return g.op('Mul', [grad, lr]);
}

/** Every trainable weight's update (after tl's decoupled weight decay), and `weights_sum`, finite only if all of them are. */
function emitUpdates(graph: TailGraph, options: TrainStepOptions, lr: string, step: string): void {
  const { g } = graph;
  // Each distinct rate once: the step's rate times the weight's scale, and its weight decay factor.
  const rates = new Map<number, { lr: string; decay: string | null }>();
  const rateOf = (scale: number) => {
    let r = rates.get(scale);
    if (!r) {
      const scaled = scale === 1 ? lr : g.op('Mul', [lr, g.f(scale)]);
      r = { lr: scaled, decay: options.weightDecay > 0 ? g.op('Sub', [g.f(1), g.op('Mul', [scaled, g.f(options.weightDecay)])]) : null };
      rates.set(scale, r);
    }
    return r;
  };
  const oneMinusB1t = options.optimizer === 'adam' ? g.op('Sub', [g.f(1), g.op('Pow', [g.f(ADAM.b1), step])]) : '';
  const oneMinusB2t = options.optimizer === 'adam' ? g.op('Sub', [g.f(1), g.op('Pow', [g.f(ADAM.b2), step])]) : '';
  const sums: string[] = [];
  for (const spec of graph.trainable) {
    const grad = graph.grads.get(spec.input);
    if (grad === undefined) throw new TrainStepCompileError(`Weight ${spec.variable} gets no gradient from the loss.`);
    if (options.emitGradients) {
      spec.gradient = `${spec.input}_grad`;
      g.node('Identity', [grad], 'grad', [], spec.gradient);
      graph.addOutput(spec.gradient, spec.shape);
    }
    const rate = rateOf(options.lrScales?.[spec.variable] ?? 1);
    const w = rate.decay ? g.op('Mul', [spec.input, rate.decay]) : spec.input;
    const stepOf = optimizerStep(graph, spec, grad, options, { lr: rate.lr, oneMinusB1t, oneMinusB2t });
    // The new weight is w - step, written straight to the graph output (no copy through an Identity).
    g.node('Sub', [w, stepOf], 'updated', [], spec.output);
    graph.addOutput(spec.output, spec.shape);
    sums.push(g.reduceSum(spec.output, spec.shape.map((_, i) => i)));
  }
  // One number that is finite only if every updated weight is (NaN and infinities propagate through the sum).
  g.node('Sum', sums.length > 0 ? sums : [g.f(0)], 'weights_sum', [], 'weights_sum');
  graph.addOutput('weights_sum', []);
}

/**
 * Compiles one training step of `tail` (its last layer a softmax classifier) for the given optimizer. Frozen layers
 * inside the tail (BatchNormalization with `--bn frozen`) become constants; every trainable weight is a graph input
 * with an updated output.
 */
export function compileTrainStep(tail: LayersModel, options: TrainStepOptions): TrainStepGraph {
  const graph = new TailGraph();
  // Without training-mode BatchNormalization the rows of a batch never meet, so the NCHWc weight gradient's fold can
  // take a fixed batch (short batches padded by the trainer) instead of padding the activations in the graph.
  const trainingNorm = tail.layers.some((l) => l.getClassName() === 'BatchNormalization' && l.trainable);
  const nchwc = options.nchwc ? { ...options.nchwc, exact: !trainingNorm } : null;
  const { boundary, tape, probs, outputTensor, output } = emitForward(tail, graph, 'train', nchwc);
  if ((output === 'sigmoid') !== Boolean(options.multiLabel)) throw new TrainStepCompileError(`The tail's output ('${outputTensor.sourceLayer.name}') is a ${output}; ${options.multiLabel ? 'several labels per image train a sigmoid' : 'one label per image trains a softmax'}.`);
  const { inputs, dLogits } = options.multiLabel ? emitBinaryLoss(graph, probs, options.labelSmoothing, options.multiLabel) : emitLoss(graph, probs, options);
  backpropagate(graph, tape, outputTensor.id, dLogits);
  emitUpdates(graph, options, inputs.lr, inputs.step);
  const hasFold = graph.nchwcLayers.length > 0 && nchwc !== null;
  return {
    bytes: graph.encode(`${tail.name}_train_step`),
    boundary,
    maxBatch: hasFold ? nchwc.batch : null,
    fixedBatch: hasFold && nchwc.exact ? nchwc.batch : null,
    masks: graph.masks,
    trainable: graph.trainable,
    state: graph.state,
    inputs,
    outputs: { loss: 'loss', correct: 'correct', weightsSum: 'weights_sum' },
    nchwcLayers: graph.nchwcLayers,
  };
}

/** The batch statistics of a tail's training BatchNormalization layers, for precise BatchNorm. */
export interface StatisticsGraph {
  bytes: Uint8Array;
  boundary: string[];
  trainable: Pick<TrainableSpec, 'variable' | 'shape' | 'input'>[];
  /** Each training BatchNormalization's moving statistic (its variable) and the output holding the batch's. */
  statistics: { variable: string; shape: number[]; output: string }[];
}

/**
 * The tail's forward pass as the train step runs it (BatchNormalization on batch statistics) but without dropout,
 * giving out each training BatchNormalization's batch mean and (biased) variance, as tfjs's training-mode call
 * computes them: what precise BatchNorm averages over training batches.
 */
export function compileBatchStatistics(tail: LayersModel, options: { nchwc?: NchwcTarget | null } = {}): StatisticsGraph {
  const graph = new TailGraph();
  const { boundary } = emitForward(tail, graph, 'stats', options.nchwc ?? null);
  // The classifier after the last BatchNormalization is computed for nothing: it is cut from the graph here.
  pruneTo(graph, new Set(graph.statistics.map((s) => s.output)), new Set(boundary));
  return {
    bytes: graph.encode(`${tail.name}_batch_statistics`),
    boundary,
    trainable: graph.trainable.filter((t) => graph.inputs.some((i) => i.name === t.input)).map(({ variable, shape, input }) => ({ variable, shape, input })),
    statistics: graph.statistics,
  };
}

/**
 * Drops the nodes, initializers and inputs (but `keepInputs`) that none of `outputs` depends on; the graph's outputs
 * become those.
 */
function pruneTo(graph: TailGraph, outputs: Set<string>, keepInputs: Set<string>): void {
  const { g } = graph;
  const needed = new Set(outputs);
  const keep: typeof g.nodes = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const node = g.nodes[i]!;
    if (!(node.output ?? []).some((o) => needed.has(o))) continue;
    keep.push(node);
    for (const input of node.input ?? []) needed.add(input);
    // A subgraph (If) reads outer values by name: they are needed too.
    for (const attr of node.attribute ?? []) for (const sub of attr.g ? [attr.g] : []) for (const n of sub.node ?? []) for (const input of n.input ?? []) needed.add(input);
  }
  g.nodes.splice(0, g.nodes.length, ...keep.reverse());
  const initializers = g.initializers.filter((t) => needed.has(t.name!));
  g.initializers.splice(0, g.initializers.length, ...initializers);
  const inputs = graph.inputs.filter((v) => needed.has(v.name!) || keepInputs.has(v.name!));
  graph.inputs.splice(0, graph.inputs.length, ...inputs);
  const outs = graph.outputs.filter((v) => outputs.has(v.name!));
  graph.outputs.splice(0, graph.outputs.length, ...outs);
}

/**
 * The tail's forward pass in inference mode (BatchNormalization on its moving statistics, no dropout), with the same
 * lowering and the same inputs for trainable weights and moving statistics as the train step: evaluation on ONNX
 * Runtime with the weights of the moment.
 */
export function compileTailForward(tail: LayersModel, options: { nchwc?: NchwcTarget | null } = {}): ForwardGraph {
  const graph = new TailGraph();
  const { boundary, probs } = emitForward(tail, graph, 'infer', options.nchwc ?? null);
  graph.g.node('Identity', [probs.name], 'probs', [], 'probs');
  graph.addOutput('probs', probs.shape);
  return {
    bytes: graph.encode(`${tail.name}_forward`),
    boundary,
    trainable: graph.trainable.map(({ variable, shape, input }) => ({ variable, shape, input })),
    state: graph.state.map(({ variable, shape, input }) => ({ variable, shape, input })),
    probs: 'probs',
    nchwcLayers: graph.nchwcLayers,
  };
}
