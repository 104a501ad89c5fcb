// The ONNX train-step compiler against TensorFlow.js: every gradient rule, registry tails, optimizer steps.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type LayersModel, type SymbolicTensor, type Tensor, type Tf } from '../../src/backend/index.js';
import { compileTrainStep, TrainStepCompileError, type TrainStepOptions } from '../../src/onnx/train-step.js';
import { StepSession } from '../../src/onnx/step-session.js';
import { onnx } from '../../src/onnx/graph.js';
import { nchwcBlockSize } from '../../src/onnx/runtime.js';
import { buildVariant } from '../../src/registry/index.js';
import { applyTrainability, attachHead, cutModel } from '../../src/model/index.js';
import { applyWeightDecay, createOptimizer } from '../../src/step/optim.js';
import { trainingLoss, type LossConfig } from '../../src/model/loss.js';
import { sliceGradients } from '../../src/replicas/gradients.js';
import { mixedTargets } from '../../src/data/mix.js';
import { randomize as randomizeWeights } from '../helpers/models.js';
import { randomArray } from '../helpers/tensors.js';

let tf: Tf;
/** ONNX Runtime's NCHWc block on this CPU (0: none, and the nchwc cases skip). */
let block = 0;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  block = await nchwcBlockSize();
});

/** Both lowerings of windows: gathered taps (any provider) and ONNX Runtime's NCHWc CPU kernels for depthwise layers. */
const LOWERINGS = ['gather', 'nchwc'] as const;
type Lowering = (typeof LOWERINGS)[number];

/** The compile options of a lowering for batches of up to `batch` images; false: this CPU cannot run it (skip). */
function lowering(kind: Lowering, batch: number, skip: () => void): Partial<TrainStepOptions> {
  if (kind === 'gather') return {};
  if (block === 0) {
    console.log('skipped: ONNX Runtime has no NCHWc kernels on this CPU');
    skip();
  }
  return { nchwc: { block, batch } };
}

const SGD: TrainStepOptions = { optimizer: 'sgd', momentum: 0, nesterov: false, labelSmoothing: 0, weightDecay: 0, emitGradients: true };

const randomize = (model: LayersModel, seed: number) => randomizeWeights(tf, model, seed);

/** Largest difference relative to the reference's largest magnitude, or to `floor` when that is smaller. */
function maxRel(ours: Float32Array, ref: Float32Array, floor = 0): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  scale = Math.max(scale, floor);
  return scale === 0 ? diff : diff / scale;
}

interface Case {
  inputs: { data: Float32Array; shape: number[] }[];
  labels: Int32Array;
}

function batchFor(tail: LayersModel, n: number, classes: number, seed: number): Case {
  return {
    inputs: tail.inputs.map((t, i) => {
      const shape = [n, ...(t.shape.slice(1) as number[])];
      return { data: randomArray(shape.reduce((a, b) => a * b, 1), seed + i), shape };
    }),
    labels: Int32Array.from({ length: n }, (_, i) => (i * 7 + seed) % classes),
  };
}

/** ONNX gradients against tfjs autodiff (tl's own training path) for one batch; the worst relative error per weight. */
async function gradientErrors(tail: LayersModel, c: Case, loss: LossConfig, options: Partial<TrainStepOptions> = {}): Promise<Record<string, number>> {
  const classes = (tail.outputs[0]!.shape[1] as number);
  const before = tf.memory().numTensors;
  const inputs = c.inputs.map((x) => tf.tensor(x.data, x.shape));
  const graph = compileTrainStep(tail, { ...SGD, labelSmoothing: loss.labelSmoothing, ...options });
  // The moving statistics before tfjs's training-mode forward pass updates them (--bn train).
  const statesBefore = graph.state.map((st) => Float32Array.from(tail.weights.find((w) => w.originalName === st.variable)!.read().dataSync() as Float32Array));
  const ref = await sliceGradients(tf, tail, inputs, c.labels, { classes, accumulate: 1, scale: 1, loss, dropoutSeed: null });
  const refByName = new Map(tail.trainableWeights.map((w, i) => [w.originalName, ref.grads[i]!.dataSync() as Float32Array]));
  tf.dispose([...inputs, ...ref.grads]);
  expect(tf.memory().numTensors).toBe(before);

  expect(graph.trainable.map((s) => s.variable).sort()).toEqual([...refByName.keys()].sort());
  const trainer = await StepSession.open(graph, graph.trainable.map((s) => tail.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 2, states: statesBefore });
  const sampleWeights = Float32Array.from(c.labels, (l) => loss.classWeights?.[l] ?? 1);
  const result = await trainer.step({ boundary: c.inputs, labels: c.labels, sampleWeights, masks: [], lr: 0 });
  const states = trainer.currentStates();
  await trainer.close();
  expect(result.loss).toBeCloseTo(ref.lossSum / c.labels.length, 4);
  expect(result.correct).toBe(ref.correct);
  // A weight whose true gradient is 0 (a BatchNorm shift that the next training-mode BatchNorm removes again) gets
  // float noise on both engines: errors are relative to the weight's largest gradient, but to no less than a
  // thousandth of the model's largest.
  const floor = 1e-3 * Math.max(...[...refByName.values()].map((a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
  return Object.fromEntries([
    ...graph.trainable.map((s, i) => [s.variable, maxRel(result.gradients![i]!, refByName.get(s.variable)!, floor)] as const),
    ...graph.state.map((st, i) => [`updated ${st.variable}`, maxRel(states[i]!, tail.weights.find((w) => w.originalName === st.variable)!.read().dataSync() as Float32Array)] as const),
  ]);
}

const plainLoss: LossConfig = { labelSmoothing: 0, classWeights: null };

/** A small functional model: `body` maps the input to a feature map, then pooling and a softmax over 3 classes. */
function small(shape: number[], body: (x: SymbolicTensor) => SymbolicTensor, seed: number, bn: 'frozen' | 'train' = 'frozen', activation: 'softmax' | 'sigmoid' = 'softmax'): LayersModel {
  const input = tf.input({ shape });
  const features = body(input);
  const pooled = tf.layers.globalAveragePooling2d({}).apply(features) as SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation }).apply(pooled) as SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  randomize(model, seed);
  // As tl trains: BatchNormalization that does not train runs in inference mode.
  applyTrainability(model, new Set(), bn);
  return model;
}

const L = () => tf.layers;

describe('gradient rules against tfjs autodiff', () => {
  const cases: [string, number[], (x: SymbolicTensor) => SymbolicTensor][] = [
    ['Conv2D 3x3 stride 2 same on an odd size, bias, relu6', [7, 7, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6' }).apply(x) as SymbolicTensor],
    ['Conv2D 1x1 without bias, frozen BatchNormalization, ReLU(max 6)', [5, 5, 6], (x) => {
      const conv = L().conv2d({ filters: 8, kernelSize: 1, useBias: false }).apply(x) as SymbolicTensor;
      const bn = L().batchNormalization({ trainable: false }).apply(conv) as SymbolicTensor;
      return L().reLU({ maxValue: 6 }).apply(bn) as SymbolicTensor;
    }],
    ['ZeroPadding2D then Conv2D 3x3 stride 2 valid (MobileNetV2 downsampling), 5x3 kernel stride 1 valid', [8, 8, 3], (x) => {
      const padded = L().zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(x) as SymbolicTensor;
      const down = L().conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'valid' }).apply(padded) as SymbolicTensor;
      return L().conv2d({ filters: 2, kernelSize: [3, 2], padding: 'valid', activation: 'sigmoid' }).apply(down) as SymbolicTensor;
    }],
    ['DepthwiseConv2D 3x3 stride 2 same on an odd size (multiplier 1), bias', [7, 7, 4], (x) => L().depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same' }).apply(x) as SymbolicTensor],
    ['DepthwiseConv2D 3x3 multiplier 2, valid, relu6 activation layer', [6, 6, 3], (x) => {
      const dw = L().depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'valid', useBias: false }).apply(x) as SymbolicTensor;
      return L().activation({ activation: 'relu6' }).apply(dw) as SymbolicTensor;
    }],
    ['MaxPooling2D 3x3 stride 2 valid after a ReLU (ties at 0 go to the first maximum), 2x2 same on an odd size', [9, 9, 3], (x) => {
      const r = L().conv2d({ filters: 4, kernelSize: 1, activation: 'relu' }).apply(x) as SymbolicTensor;
      const p = L().maxPooling2d({ poolSize: 3, strides: 2 }).apply(r) as SymbolicTensor;
      return L().maxPooling2d({ poolSize: 2, strides: 2, padding: 'same' }).apply(L().conv2d({ filters: 3, kernelSize: 1 }).apply(p) as SymbolicTensor) as SymbolicTensor;
    }],
    ['AveragePooling2D 2x2 stride 2 valid and 3x3 stride 2 valid', [9, 9, 3], (x) => {
      const c = L().conv2d({ filters: 4, kernelSize: 1 }).apply(x) as SymbolicTensor;
      const p = L().averagePooling2d({ poolSize: 2, strides: 2 }).apply(c) as SymbolicTensor;
      return L().averagePooling2d({ poolSize: 3, strides: 2 }).apply(L().conv2d({ filters: 3, kernelSize: 1 }).apply(p) as SymbolicTensor) as SymbolicTensor;
    }],
    ['Concatenate of two branches and Multiply of two maps', [5, 5, 3], (x) => {
      const a = L().conv2d({ filters: 2, kernelSize: 1, activation: 'relu' }).apply(x) as SymbolicTensor;
      const b = L().conv2d({ filters: 3, kernelSize: 3, padding: 'same' }).apply(x) as SymbolicTensor;
      const cat = L().concatenate().apply([a, b]) as SymbolicTensor;
      const gate = L().conv2d({ filters: 5, kernelSize: 1, activation: 'sigmoid' }).apply(x) as SymbolicTensor;
      return L().multiply().apply([cat, gate]) as SymbolicTensor;
    }],
    ['frozen BatchNormalization folded into a biased DepthwiseConv2D (multiplier 2) and a biased Conv2D; not into a conv another layer reads too', [6, 6, 3], (x) => {
      const dw = L().depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same' }).apply(x) as SymbolicTensor;
      const a = L().batchNormalization({ trainable: false }).apply(dw) as SymbolicTensor;
      const conv = L().conv2d({ filters: 6, kernelSize: 3, padding: 'same' }).apply(L().reLU({ maxValue: 6 }).apply(a) as SymbolicTensor) as SymbolicTensor;
      const b = L().batchNormalization({ trainable: false }).apply(conv) as SymbolicTensor;
      const shared = L().conv2d({ filters: 6, kernelSize: 1 }).apply(b) as SymbolicTensor;
      const c = L().batchNormalization({ trainable: false }).apply(shared) as SymbolicTensor;
      return L().add().apply([c, shared]) as SymbolicTensor;
    }],
    ['a residual Add with the shortcut used twice', [6, 6, 4], (x) => {
      const a = L().conv2d({ filters: 4, kernelSize: 1, activation: 'relu' }).apply(x) as SymbolicTensor;
      const b = L().conv2d({ filters: 4, kernelSize: 3, padding: 'same' }).apply(a) as SymbolicTensor;
      return L().add().apply([a, b]) as SymbolicTensor;
    }],
  ];
  for (const kind of LOWERINGS) {
    for (const [name, shape, body] of cases) {
      it(`${name} (${kind})`, async (t) => {
        // Batches of 3 in a step that takes up to 5: the NCHWc weight gradient pads the batch it folds.
        const options = lowering(kind, 5, () => t.skip());
        const model = small(shape, body, 5);
        const errors = await gradientErrors(model, batchFor(model, 3, 3, 1), plainLoss, options);
        for (const [w, e] of Object.entries(errors)) expect(e, w).toBeLessThan(1e-4);
        model.dispose();
      });
    }
  }

  it('depthwise layers of multiplier 1 run on the NCHWc kernels, stride 2 and odd sizes included; multiplier 2 keeps the gathered taps', async (t) => {
    const options = lowering('nchwc', 4, () => t.skip());
    const model = small([9, 9, 8], (x) => {
      const a = L().depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', name: 'dw_stride2' }).apply(x) as SymbolicTensor;
      const b = L().depthwiseConv2d({ kernelSize: 3, padding: 'valid', name: 'dw_valid' }).apply(a) as SymbolicTensor;
      return L().depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', name: 'dw_multiplier2' }).apply(b) as SymbolicTensor;
    }, 3);
    const graph = compileTrainStep(model, { ...SGD, ...options });
    expect(graph.nchwcLayers).toEqual(['dw_stride2', 'dw_valid']);
    expect(graph.maxBatch).toBe(4);
    // No training-mode BatchNorm: a fixed batch, short ones padded by the trainer, nothing padded in the graph.
    const ops = (bytes: Uint8Array) => onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType);
    expect(graph.fixedBatch).toBe(4);
    expect(ops(graph.bytes).filter((op) => op === 'If' || op === 'Shape')).toEqual([]);
    expect(compileTrainStep(model, SGD).nchwcLayers).toEqual([]);
    model.dispose();
    // With a BatchNormalization that trains, rows meet in its statistics: any batch up to 4, padded in the graph.
    const withNorm = small([9, 9, 8], (x) => L().batchNormalization({}).apply(L().depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw' }).apply(x) as SymbolicTensor) as SymbolicTensor, 3, 'train');
    const normGraph = compileTrainStep(withNorm, { ...SGD, ...options });
    expect([normGraph.fixedBatch, normGraph.maxBatch]).toEqual([null, 4]);
    expect(ops(normGraph.bytes).filter((op) => op === 'If').length).toBe(2);
    withNorm.dispose();
  });

  it('a frozen BatchNormalization becomes a scale on the kernel before it, and the graph holds no unused constant', () => {
    const model = small([6, 6, 3], (x) => {
      const dw = L().depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false }).apply(x) as SymbolicTensor;
      return L().batchNormalization({ trainable: false }).apply(dw) as SymbolicTensor;
    }, 2);
    const nodes = onnx.ModelProto.decode(compileTrainStep(model, SGD).bytes).graph!;
    const read = new Set(nodes.node!.flatMap((n) => n.input!));
    expect(nodes.initializer!.map((t) => t.name).filter((name) => !read.has(name!))).toEqual([]);
    // The normalization's scale is applied to the kernel (the folded constant), not as a layer of its own.
    const names = nodes.initializer!.map((t) => t.name!);
    expect(names.filter((name) => name.includes('folded_scale')).length).toBe(1);
    expect(names.filter((name) => name.startsWith('batch_normalization'))).toEqual([]);
    model.dispose();
  });

  it('Conv2D 3x3 dilation 2 (tfjs has no gradient for it: checked against the zero-inserted 5x5 kernel)', async () => {
    const dilated = small([9, 9, 2], (x) => L().conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'relu', name: 'conv' }).apply(x) as SymbolicTensor, 6);
    const wide = small([9, 9, 2], (x) => L().conv2d({ filters: 3, kernelSize: 5, padding: 'same', activation: 'relu', name: 'conv' }).apply(x) as SymbolicTensor, 6);
    // The same function: the 5x5 kernel holds the 3x3 taps at even positions and zeros between.
    const k3 = dilated.getLayer('conv').getWeights()[0]!.dataSync() as Float32Array;
    const k5 = new Float32Array(5 * 5 * 2 * 3);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let c = 0; c < 6; c++) k5[((2 * i) * 5 + 2 * j) * 6 + c] = k3[(i * 3 + j) * 6 + c]!;
    const rest = dilated.getWeights().slice(1).map((t) => t.clone());
    const k5t = tf.tensor4d(k5, [5, 5, 2, 3]);
    wide.setWeights([k5t, ...rest]);
    k5t.dispose();
    const c = batchFor(dilated, 3, 3, 4);
    const inputs = c.inputs.map((x) => tf.tensor(x.data, x.shape));
    const ref = await sliceGradients(tf, wide, inputs, c.labels, { classes: 3, accumulate: 1, scale: 1, loss: plainLoss, dropoutSeed: null });
    const g5 = ref.grads[0]!.dataSync() as Float32Array;
    const expected = new Float32Array(3 * 3 * 6);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 6; k++) expected[(i * 3 + j) * 6 + k] = g5[((2 * i) * 5 + 2 * j) * 6 + k]!;
    const graph = compileTrainStep(dilated, SGD);
    const trainer = await StepSession.open(graph, graph.trainable.map((s) => dilated.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
    const r = await trainer.step({ boundary: c.inputs, labels: c.labels, sampleWeights: new Float32Array(3).fill(1), masks: [], lr: 0 });
    await trainer.close();
    expect(maxRel(r.gradients![0]!, expected)).toBeLessThan(1e-4);
    for (let i = 1; i < 4; i++) expect(maxRel(r.gradients![i]!, ref.grads[i]!.dataSync() as Float32Array)).toBeLessThan(1e-4);
    tf.dispose([...inputs, ...ref.grads, ...rest]);
    dilated.dispose();
    wide.dispose();
  });

  it('ReLU(max 6), relu6 and relu at exactly 0 and 6 (dead and saturated channels) pass the gradient as tfjs does', async () => {
    for (const act of ['relu-layer', 'relu6', 'relu'] as const) {
      const model = small([3, 3, 2], (x) => {
        const first = L().conv2d({ filters: 4, kernelSize: 1, name: 'first' }).apply(x) as SymbolicTensor;
        const a = act === 'relu-layer' ? L().reLU({ maxValue: 6 }).apply(first) : L().activation({ activation: act }).apply(first);
        return L().conv2d({ filters: 3, kernelSize: 1 }).apply(a as SymbolicTensor) as SymbolicTensor;
      }, 2);
      // Channel 0 is exactly 0 everywhere, channel 1 exactly 6: kernel columns of zeros, biases 0 and 6.
      const [k, b] = model.getLayer('first').getWeights();
      const kd = k!.dataSync().slice() as Float32Array;
      const bd = b!.dataSync().slice() as Float32Array;
      for (let i = 0; i < 2; i++) kd[i * 4] = kd[i * 4 + 1] = 0;
      bd[0] = 0;
      bd[1] = 6;
      const kt = tf.tensor4d(kd, [1, 1, 2, 4]);
      const bt = tf.tensor1d(bd);
      model.getLayer('first').setWeights([kt, bt]);
      tf.dispose([kt, bt]);
      const errors = await gradientErrors(model, batchFor(model, 3, 3, 6), plainLoss);
      for (const [w, e] of Object.entries(errors)) expect(e, `${act} ${w}`).toBeLessThan(1e-4);
      model.dispose();
    }
  });

  // Porting note: tfjs's AvgPoolGrad divides every window by its full size, though its forward pass (like Keras's)
  // divides border windows of 'same' padding by the pixels inside; tl's rule is the gradient of that forward pass.
  it('AveragePooling2D 3x3 stride 1 same: the gradient of the forward pass (tfjs ops that tfjs differentiates correctly)', async () => {
    const model = small([5, 5, 2], (x) => {
      const c = L().conv2d({ filters: 3, kernelSize: 1, name: 'c' }).apply(x) as SymbolicTensor;
      return L().averagePooling2d({ poolSize: 3, strides: 1, padding: 'same' }).apply(c) as SymbolicTensor;
    }, 3);
    const c = batchFor(model, 3, 3, 7);
    const inv = new Float32Array(25);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) inv[i * 5 + j] = 1 / ((Math.min(i + 1, 4) - Math.max(i - 1, 0) + 1) * (Math.min(j + 1, 4) - Math.max(j - 1, 0) + 1));
    const vars = model.trainableWeights.map((w) => w.read() as ReturnType<Tf['variable']>);
    const { value, grads } = tf.variableGrads(() => {
      const conv = tf.add(tf.conv2d(tf.tensor4d(c.inputs[0]!.data, [3, 5, 5, 2]), vars[0] as never, 1, 'valid'), vars[1]!);
      const pooled = tf.mul(tf.depthwiseConv2d(conv as never, tf.ones([3, 3, 3, 1]) as never, 1, 'same'), tf.tensor4d(inv, [1, 5, 5, 1]));
      const p = tf.softmax(tf.add(tf.matMul(tf.mean(pooled, [1, 2]), vars[2]!), vars[3]!));
      return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.tensor1d(c.labels, 'int32'), 3), tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1))) as ReturnType<Tf['scalar']>;
    }, vars);
    const graph = compileTrainStep(model, SGD);
    const trainer = await StepSession.open(graph, graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
    const r = await trainer.step({ boundary: c.inputs, labels: c.labels, sampleWeights: new Float32Array(3).fill(1), masks: [], lr: 0 });
    await trainer.close();
    expect(r.loss).toBeCloseTo(value.dataSync()[0]!, 5);
    vars.forEach((v, i) => {
      const k = graph.trainable.findIndex((s) => s.variable === model.trainableWeights[i]!.originalName);
      expect(maxRel(r.gradients![k]!, grads[v.name]!.dataSync() as Float32Array), v.name).toBeLessThan(1e-5);
    });
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
  });

  it('BatchNormalization in training mode (--bn train): batch statistics, their gradient, the moving averages', async () => {
    const model = small([5, 5, 3], (x) => {
      const conv = L().conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false }).apply(x) as SymbolicTensor;
      const bn = L().batchNormalization({ momentum: 0.9 }).apply(conv) as SymbolicTensor;
      const noScale = L().batchNormalization({ epsilon: 0.01 }).apply(L().conv2d({ filters: 3, kernelSize: 1, useBias: false }).apply(L().reLU({ maxValue: 6 }).apply(bn) as SymbolicTensor) as SymbolicTensor) as SymbolicTensor;
      return L().activation({ activation: 'relu' }).apply(noScale) as SymbolicTensor;
    }, 4, 'train');
    const errors = await gradientErrors(model, batchFor(model, 4, 3, 9), plainLoss);
    expect(Object.keys(errors).filter((k) => k.startsWith('updated')).length).toBe(4);
    // The normalisation's gradient subtracts two means (cancellation), and tfjs differentiates through tf.moments
    // where the rule uses the closed form: the two round differently, by up to a few 1e-4 here.
    for (const [w, e] of Object.entries(errors)) expect(e, w).toBeLessThan(w.startsWith('updated') ? 1e-5 : 1e-3);
    model.dispose();
  });

  it('label smoothing and class weights', async () => {
    const model = small([5, 5, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(x) as SymbolicTensor, 8);
    const errors = await gradientErrors(model, batchFor(model, 4, 3, 2), { labelSmoothing: 0.1, classWeights: [0.5, 2, 1.25] });
    for (const [w, e] of Object.entries(errors)) expect(e, w).toBeLessThan(1e-4);
    model.dispose();
  });

  it('several labels per image: sigmoid outputs and binary cross-entropy, with smoothing and positive weights', async () => {
    const model = small([5, 5, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(x) as SymbolicTensor, 8, 'frozen', 'sigmoid');
    // Label sets {0}, {1, 2}, {0, 1, 2}, {}: batchFor's labels number them.
    const targets = Float32Array.of(1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0);
    const c = batchFor(model, 4, 4, 3);
    for (const multiLabel of [{ targets, posWeights: null }, { targets, posWeights: [3, 0.5, 1.5] }]) {
      for (const labelSmoothing of [0, 0.2]) {
        const errors = await gradientErrors(model, c, { labelSmoothing, classWeights: null, multiLabel }, { multiLabel });
        for (const [w, e] of Object.entries(errors)) expect(e, `${w} (smoothing ${labelSmoothing}, weights ${String(multiLabel.posWeights)})`).toBeLessThan(1e-4);
      }
    }
    // The loss itself against the formula written out: the mean over images of the mean over labels of
    // -(w t log p + (1 - t) log(1 - p)).
    const probs = model.predict(tf.tensor(c.inputs[0]!.data, c.inputs[0]!.shape)) as Tensor;
    const p = probs.dataSync() as Float32Array;
    const w = [3, 0.5, 1.5];
    let expected = 0;
    c.labels.forEach((set, i) => {
      for (let k = 0; k < 3; k++) {
        const t = targets[set * 3 + k]!;
        expected -= (w[k]! * t * Math.log(p[i * 3 + k]!) + (1 - t) * Math.log(1 - p[i * 3 + k]!)) / 3 / c.labels.length;
      }
    });
    const loss = trainingLoss(tf, probs, tf.tensor1d(c.labels, 'int32'), 3, { labelSmoothing: 0, classWeights: null, multiLabel: { targets, posWeights: w } });
    expect(loss.dataSync()[0]).toBeCloseTo(expected, 5);
    tf.dispose([probs, loss]);
    // A softmax classifier cannot train on label sets, nor a sigmoid one on classes.
    expect(() => compileTrainStep(model, SGD)).toThrow(/sigmoid.*one label per image trains a softmax/);
    model.dispose();
  });

  it('soft targets (mixup, CutMix): the loss of mixed one-hots against the formula, and its gradient against tfjs autodiff', async () => {
    const model = small([5, 5, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(x) as SymbolicTensor, 8);
    const c = batchFor(model, 4, 3, 5);
    // Image i mixed with image 3-i at lam 0.7, smoothed by 0.1: what mixedTargets computes.
    const { targets, dominant } = mixedTargets(c.labels, 0.7, 3, 0.1);
    expect(Array.from(targets.subarray(0, 3)).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    const probs = model.predict(tf.tensor(c.inputs[0]!.data, c.inputs[0]!.shape)) as Tensor;
    const p = probs.dataSync() as Float32Array;
    let expected = 0;
    for (let i = 0; i < 4; i++) {
      for (let k = 0; k < 3; k++) {
        const t = 0.1 / 3 + 0.9 * (0.7 * (c.labels[i] === k ? 1 : 0) + 0.3 * (c.labels[3 - i] === k ? 1 : 0));
        expected -= (t * Math.log(p[i * 3 + k]!)) / 4;
      }
    }
    const loss = trainingLoss(tf, probs, tf.tensor1d(dominant, 'int32'), 3, { labelSmoothing: 0.1, classWeights: null, softTargets: true }, targets);
    expect(loss.dataSync()[0]).toBeCloseTo(expected, 5);
    tf.dispose([probs, loss]);
    // ONNX Runtime's step with the targets as an input, against tfjs autodiff of the same loss.
    const inputs = c.inputs.map((x) => tf.tensor(x.data, x.shape));
    const ref = await sliceGradients(tf, model, inputs, dominant, { classes: 3, accumulate: 2, scale: 1, loss: { labelSmoothing: 0.1, classWeights: null, softTargets: true }, dropoutSeed: null }, targets);
    const graph = compileTrainStep(model, { ...SGD, labelSmoothing: 0.1, softTargets: true });
    expect(graph.inputs.targets).toBe('targets');
    const trainer = await StepSession.open(graph, graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
    const r = await trainer.step({ boundary: c.inputs, labels: dominant, targets, sampleWeights: new Float32Array(4).fill(1), masks: [], lr: 0 });
    await trainer.close();
    expect(r.loss).toBeCloseTo(expected, 5);
    expect(r.correct).toBe(ref.correct);
    model.trainableWeights.forEach((w, i) => {
      const k = graph.trainable.findIndex((s) => s.variable === w.originalName);
      expect(maxRel(r.gradients![k]!, ref.grads[i]!.dataSync() as Float32Array), w.originalName).toBeLessThan(1e-4);
    });
    tf.dispose([...inputs, ...ref.grads]);
    model.dispose();
  });

  it('Dropout multiplies by the given mask, forward and backward (hidden dense head)', async () => {
    const input = tf.input({ shape: [6] });
    const hidden = L().dense({ units: 5, activation: 'relu' }).apply(input) as SymbolicTensor;
    const dropped = L().dropout({ rate: 0.5 }).apply(hidden) as SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: L().dense({ units: 3, activation: 'softmax' }).apply(dropped) as SymbolicTensor });
    randomize(model, 4);
    const x = randomArray(4 * 6, 3);
    const mask = Float32Array.from({ length: 4 * 5 }, (_, i) => ((i * 5) % 3 === 0 ? 0 : 2));
    const labels = Int32Array.of(0, 1, 2, 1);
    const [k1, b1, k2, b2] = model.trainableWeights.map((w) => w.read());
    const { grads } = tf.variableGrads(() => {
      const h = tf.mul(tf.relu(tf.add(tf.matMul(tf.tensor2d(x, [4, 6]), k1!), b1!)), tf.tensor2d(mask, [4, 5]));
      const p = tf.softmax(tf.add(tf.matMul(h, k2!), b2!));
      return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.tensor1d(labels, 'int32'), 3), tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), -1))) as ReturnType<Tf['scalar']>;
    }, model.trainableWeights.map((w) => w.read() as ReturnType<Tf['variable']>));
    const graph = compileTrainStep(model, SGD);
    expect(graph.masks.map((m) => m.shape)).toEqual([[-1, 5]]);
    const trainer = await StepSession.open(graph, graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
    const r = await trainer.step({ boundary: [{ data: x, shape: [4, 6] }], labels, sampleWeights: new Float32Array(4).fill(1), masks: [mask], lr: 0 });
    await trainer.close();
    model.trainableWeights.forEach((w) => {
      const k = graph.trainable.findIndex((s) => s.variable === w.originalName);
      expect(maxRel(r.gradients![k]!, grads[(w.read() as ReturnType<Tf['variable']>).name]!.dataSync() as Float32Array), w.originalName).toBeLessThan(1e-5);
    });
    tf.dispose(Object.values(grads));
    model.dispose();
  });

  it('a layer without a gradient rule is an error naming it', () => {
    const model = small([6, 6, 3], (x) => L().upSampling2d({ size: [2, 2], name: 'the_upsampling' }).apply(x) as SymbolicTensor, 1);
    expect(() => compileTrainStep(model, SGD)).toThrow(TrainStepCompileError);
    expect(() => compileTrainStep(model, SGD)).toThrow('the_upsampling: layer class UpSampling2D has no gradient rule.');
    model.dispose();
  });
});

describe('registry tails against tfjs autodiff (random weights, random BatchNorm statistics)', () => {
  const tails: [string, number, number, 'frozen' | 'train'][] = [
    ['mobilenet_v2_035', 64, 100, 'frozen'], ['mobilenet_v2_035', 32, 0, 'frozen'], ['resnet50', 64, 140, 'frozen'], ['vgg16', 32, 11, 'frozen'],
    ['mobilenet_v3_small', 64, 0, 'frozen'], ['mobilenet_v3_large', 64, 150, 'frozen'], ['mobilenet_025', 64, 40, 'frozen'], ['mobilenet_v2_035', 64, 100, 'train'],
  ];
  for (const [kind, [name, size, freeze, bn]] of LOWERINGS.flatMap((kind) => tails.map((t) => [kind, t] as const))) {
    it(`${name} --freeze ${freeze} --bn ${bn} at ${size} px (${kind})`, async (t) => {
      const n = bn === 'train' ? 4 : 2;
      const options = lowering(kind, n, () => t.skip());
      const backbone = buildVariant(tf, name, { includeTop: false, inputSize: size });
      const full = attachHead(tf, backbone, { classes: 4, dropout: 0, name: 'full' });
      randomize(full, 7);
      const frozen = new Set(backbone.layers.slice(0, freeze).map((l) => l.name));
      applyTrainability(full, frozen, bn);
      const cut = cutModel(tf, full, frozen);
      const errors = await gradientErrors(cut.tail, batchFor(cut.tail, n, 4, 3), plainLoss, options);
      const worst = Object.entries(errors).sort((a, b) => b[1] - a[1])[0]!;
      expect(worst[1], worst[0]).toBeLessThan(1e-4);
      if (cut.tail !== full) cut.tail.dispose();
      full.dispose();
    }, 120_000);
  }
});

describe('a pretrained tail (real weights: dead channels, saturated ReLU6)', () => {
  it.for(LOWERINGS)('mobilenet_v2.nsfwjs --freeze 100 at 96 px: gradients equal tfjs autodiff (%s)', { timeout: 60_000 }, async (kind, ctx) => {
    const options = lowering(kind, 8, () => ctx.skip());
    const { loadPretrained } = await import('../../src/weights/index.js');
    const { tempDir } = await import('../helpers/tmp.js');
    const pretrained = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, inputSize: 96, store: tempDir() });
    const full = attachHead(tf, pretrained.model, { classes: 5, dropout: 0, name: 'full' });
    const frozen = new Set(pretrained.model.layers.slice(0, 100).map((l) => l.name));
    applyTrainability(full, frozen, 'frozen');
    const cut = cutModel(tf, full, frozen);
    // Boundary tensors from real images' worth of activations: the frozen part run on random pixels.
    const boundary = tf.tidy(() => {
      const y = cut.frozen!.predict(tf.randomUniform([8, 96, 96, 3], 0, 1, 'float32', 5));
      return (Array.isArray(y) ? y : [y]).map((t) => ({ data: t.dataSync() as Float32Array, shape: t.shape as number[] }));
    });
    const errors = await gradientErrors(cut.tail, { inputs: boundary, labels: Int32Array.from({ length: 8 }, (_, i) => i % 5) }, plainLoss, options);
    const worst = Object.entries(errors).sort((a, b) => b[1] - a[1])[0]!;
    expect(worst[1], worst[0]).toBeLessThan(1e-4);
    cut.tail.dispose();
    full.dispose();
  });
});

describe('the step reports whether every updated weight is finite', () => {
  it('true after an ordinary step, false once a weight overflows', async () => {
    const model = small([5, 5, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(x) as SymbolicTensor, 12);
    const graph = compileTrainStep(model, { ...SGD, emitGradients: false });
    const trainer = await StepSession.open(graph, graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
    const c = batchFor(model, 3, 3, 2);
    const step = (lr: number) => trainer.step({ boundary: c.inputs, labels: c.labels, sampleWeights: new Float32Array(3).fill(1), masks: [], lr });
    expect((await step(0.01)).weightsFinite).toBe(true);
    // SGD at 3e38: within a few steps the weights overflow float32. The flag must agree with the weights every step.
    const seen: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await step(3e38);
      const actual = trainer.currentWeights().every((w) => w.every(Number.isFinite));
      expect(r.weightsFinite, `step ${i}`).toBe(actual);
      seen.push(actual);
    }
    expect(seen).toContain(false);
    await trainer.close();
    model.dispose();
  });
});

describe('a chunk of steps in one run (the Loop form)', () => {
  it('equals the same steps run one by one: Adam, dropout masks, per-step rates, --bn train statistics, a flagged overflow', async () => {
    const input = tf.input({ shape: [6, 6, 3] });
    const conv = L().conv2d({ filters: 4, kernelSize: 3, padding: 'same' }).apply(input) as SymbolicTensor;
    const bn = L().batchNormalization({ momentum: 0.9 }).apply(conv) as SymbolicTensor;
    const pooled = L().globalAveragePooling2d({}).apply(L().reLU({ maxValue: 6 }).apply(bn) as SymbolicTensor) as SymbolicTensor;
    const dropped = L().dropout({ rate: 0.5 }).apply(pooled) as SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: L().dense({ units: 3, activation: 'softmax' }).apply(dropped) as SymbolicTensor });
    randomize(model, 21);
    applyTrainability(model, new Set(), 'train');
    const graph = compileTrainStep(model, { optimizer: 'adam', momentum: 0, nesterov: false, labelSmoothing: 0, weightDecay: 0.01 });
    expect(graph.state.length).toBe(2);
    const weights = graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array);
    const states = graph.state.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array);
    const batches = [0, 1, 2, 3, 4].map((k) => {
      const c = batchFor(model, 4, 3, 30 + k);
      return { boundary: c.inputs, labels: c.labels, sampleWeights: Float32Array.of(1, 0.5, 2, 1), masks: [Float32Array.from({ length: 16 }, (_, i) => ((i + k) % 3 === 0 ? 0 : 2))], lr: 1e-2 * (k + 1) };
    });
    const one = await StepSession.open(graph, weights, { threads: 1, states });
    const chunked = await StepSession.open(graph, weights, { threads: 1, states, loop: true });
    expect([one.chunked, chunked.chunked]).toEqual([false, true]);
    const single: Awaited<ReturnType<StepSession['step']>>[] = [];
    for (const b of batches) single.push(await one.step(b));
    // One step first, so that the chunk starts at step 2 (Adam's bias correction counts from the trainer's steps).
    const together = [await chunked.step(batches[0]!), ...(await chunked.steps(batches.slice(1)))];
    expect(chunked.iterations).toBe(5);
    together.forEach((r, k) => {
      expect(r.loss, `loss ${k}`).toBeCloseTo(single[k]!.loss, 5);
      expect(r.correct).toBe(single[k]!.correct);
      expect(r.weightsFinite).toBe(true);
    });
    const pairs = [[one.currentWeights(), chunked.currentWeights()], [one.currentStates(), chunked.currentStates()], [one.currentSlots().flat(), chunked.currentSlots().flat()]] as const;
    for (const [a, b] of pairs) a.forEach((w, i) => expect(maxRel(b[i]!, w), `tensor ${i}`).toBeLessThan(1e-5));
    // A chunk whose third step overflows: each step's own flag, not only the last one's.
    const flags = (await chunked.steps([1, 2, 3, 4].map((k) => ({ ...batches[k]!, lr: k >= 3 ? 3e38 : 1e-3 })))).map((r) => r.weightsFinite);
    expect(flags.slice(0, 2)).toEqual([true, true]);
    expect(flags.slice(2)).toContain(false);
    await expect(chunked.steps([batches[0]!, { ...batches[1]!, labels: batches[1]!.labels.slice(0, 3) }])).rejects.toThrow('differ in size');
    await one.close();
    await chunked.close();
    model.dispose();
  });
});

describe('optimizer steps against tfjs', () => {
  const configs: [string, Partial<TrainStepOptions>][] = [
    ['adam', { optimizer: 'adam' }],
    ['adam with weight decay (AdamW)', { optimizer: 'adam', weightDecay: 0.05 }],
    ['sgd', { optimizer: 'sgd' }],
    ['sgd momentum 0.9 nesterov', { optimizer: 'sgd', momentum: 0.9, nesterov: true }],
    ['rmsprop momentum 0.5', { optimizer: 'rmsprop', momentum: 0.5 }],
  ];
  for (const [name, config] of configs) {
    it(`five ${name} steps give tfjs's weights`, async () => {
      const model = small([5, 5, 3], (x) => L().conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(x) as SymbolicTensor, 9);
      const options = { ...SGD, emitGradients: false, ...config };
      const graph = compileTrainStep(model, options);
      const trainer = await StepSession.open(graph, graph.trainable.map((s) => model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array), { threads: 1 });
      const optimizer = createOptimizer(tf, { optimizer: options.optimizer, momentum: options.momentum, nesterov: options.nesterov }, 0.01);
      const before = tf.memory().numTensors;
      for (let s = 0; s < 5; s++) {
        const c = batchFor(model, 3, 3, 10 + s);
        const lr = 0.01 * (1 + s / 10);
        await trainer.step({ boundary: c.inputs, labels: c.labels, sampleWeights: new Float32Array(3).fill(1), masks: [], lr });
        const inputs = c.inputs.map((x) => tf.tensor(x.data, x.shape));
        const ref = await sliceGradients(tf, model, inputs, c.labels, { classes: 3, accumulate: 1, scale: 1, loss: plainLoss, dropoutSeed: null });
        (optimizer as unknown as { learningRate: number }).learningRate = lr;
        if ('setLearningRate' in optimizer) (optimizer as { setLearningRate: (v: number) => void }).setLearningRate(lr);
        if (options.weightDecay > 0) applyWeightDecay(tf, model.trainableWeights.map((w) => w.read()), lr, options.weightDecay);
        optimizer.applyGradients(Object.fromEntries(model.trainableWeights.map((w, i) => [(w.read() as ReturnType<Tf['variable']>).name, ref.grads[i]!])) as Record<string, ReturnType<Tf['variable']>>);
        tf.dispose([...inputs, ...ref.grads]);
      }
      const ours = trainer.currentWeights();
      await trainer.close();
      graph.trainable.forEach((s, i) => {
        const theirs = model.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array;
        expect(maxRel(ours[i]!, theirs), s.variable).toBeLessThan(1e-5);
      });
      optimizer.dispose();
      expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
      model.dispose();
    });
  }
});
