// Exports a TensorFlow.js LayersModel (tl's architectures, custom layers, cuts with several outputs) to an ONNX
// graph (opset 13). Inside, tensors are NCHW as ONNX operators expect; inputs and 4-D outputs stay NHWC at the
// graph's edges. BatchNormalization after a convolution is folded into it.
import type { onnx as P } from 'onnx-proto';
import type { Layer, LayersModel, SymbolicTensor } from '../backend/index.js';
import { A, bnAffine, FLOAT, GraphBuilder, onnx, OnnxExportError, OPSET, pair, spatialPads, weightsOf } from './graph.js';

export { OnnxExportError, OPSET } from './graph.js';

interface Value {
  name: string;
  /** Rank of the Keras tensor; rank-4 values are held NCHW. */
  rank: number;
}

/** Counts how many layer inputs (and model outputs) consume each symbolic tensor. */
function consumers(model: LayersModel): Map<number, number> {
  const count = new Map<number, number>();
  for (const layer of model.layers) for (const t of layer.inboundNodes[0]?.inputTensors ?? []) count.set(t.id, (count.get(t.id) ?? 0) + 1);
  for (const t of model.outputs) count.set(t.id, (count.get(t.id) ?? 0) + 1);
  return count;
}

function activation(g: GraphBuilder, name: string, x: Value, base: string): Value {
  switch (name) {
    case 'linear':
      return x;
    case 'relu':
      return { name: g.node('Relu', [x.name], base), rank: x.rank };
    case 'relu6':
      return { name: g.node('Clip', [x.name, g.scalar(`${base}_min`, 0), g.scalar(`${base}_max`, 6)], base), rank: x.rank };
    case 'sigmoid':
      return { name: g.node('Sigmoid', [x.name], base), rank: x.rank };
    case 'tanh':
      return { name: g.node('Tanh', [x.name], base), rank: x.rank };
    case 'hardSigmoid':
    case 'hard_sigmoid':
      return { name: g.node('HardSigmoid', [x.name], base, [A.float('alpha', 0.2), A.float('beta', 0.5)]), rank: x.rank };
    case 'swish':
    case 'silu':
      return { name: g.node('Mul', [x.name, g.node('Sigmoid', [x.name], base)], base), rank: x.rank };
    case 'elu':
      return { name: g.node('Elu', [x.name], base, [A.float('alpha', 1)]), rank: x.rank };
    case 'softplus':
      return { name: g.node('Softplus', [x.name], base), rank: x.rank };
    case 'softmax':
      // Keras takes the last axis: channels, which are axis 1 of an NCHW value.
      return { name: g.node('Softmax', [x.name], base, [A.int('axis', x.rank === 4 ? 1 : -1)]), rank: x.rank };
    default:
      throw new OnnxExportError(`${base}: activation '${name}' has no ONNX export.`);
  }
}

/** The NHWC view of a value (for Keras operations whose meaning depends on the memory order). */
function toNhwc(g: GraphBuilder, x: Value, base: string): string {
  return x.rank === 4 ? g.node('Transpose', [x.name], `${base}_nhwc`, [A.ints('perm', [0, 2, 3, 1])]) : x.name;
}

function convWeights(layer: Layer, depthwise: boolean): { kernel: Float32Array; dims: number[]; bias: Float32Array; outChannels: number } {
  const w = weightsOf(layer);
  const k = w.get(depthwise ? 'depthwise_kernel' : 'kernel');
  if (!k) throw new OnnxExportError(`${layer.name}: no kernel weight.`);
  const [kh, kw, cin, cout] = k.shape as [number, number, number, number];
  const out = depthwise ? cin * cout : cout;
  const kernel = new Float32Array(k.data.length);
  // HWIO -> OIHW; depthwise [kh, kw, in, mult] -> [in * mult, 1, kh, kw] (output channel i * mult + m).
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let i = 0; i < cin; i++) {
        for (let o = 0; o < cout; o++) {
          const src = ((y * kw + x) * cin + i) * cout + o;
          const dst = depthwise ? ((i * cout + o) * kh + y) * kw + x : ((o * cin + i) * kh + y) * kw + x;
          kernel[dst] = k.data[src]!;
        }
      }
    }
  }
  return { kernel, dims: depthwise ? [out, 1, kh, kw] : [cout, cin, kh, kw], bias: w.get('bias')?.data ?? new Float32Array(out), outChannels: out };
}

/** What a layer's export rule sees: the graph so far, the layer, its inputs' values, and the BatchNormalization folding. */
interface LayerContext {
  g: GraphBuilder;
  layer: Layer;
  node: NonNullable<Layer['inboundNodes'][number]>;
  ins: Value[];
  x: Value;
  out: SymbolicTensor;
  config: Record<string, unknown>;
  base: string;
  /** The BatchNormalization layer that consumes each tensor (by id), and how many layers consume it. */
  bnAfter: Map<number, Layer>;
  uses: Map<number, number>;
  /** BatchNormalization layers folded into the convolution before them (by name). */
  folded: Map<string, Layer>;
}

type LayerRule = (c: LayerContext) => Value;

function convRule(depthwise: boolean): LayerRule {
  return ({ g, layer, node, x, out, config, base, bnAfter, uses, folded }) => {
    const { kernel, dims: kdims, bias, outChannels } = convWeights(layer, depthwise);
    const kernelSize = [kdims[2]!, kdims[3]!];
    const strides = pair(config.strides as number[], 1);
    const dilation = pair(config.dilationRate as number[], 1);
    const pads = spatialPads(layer, node.inputTensors[0]!, kernelSize, strides, dilation);
    // A BatchNormalization that alone consumes a linear convolution is folded into its weights.
    const next = bnAfter.get(out.id);
    const act = (config.activation as string | undefined) ?? 'linear';
    let w = kernel;
    let b = bias;
    if (next && uses.get(out.id) === 1 && act === 'linear') {
      const { scale, shift } = bnAffine(next, outChannels);
      const per = w.length / outChannels;
      w = new Float32Array(kernel.length);
      b = new Float32Array(outChannels);
      for (let c = 0; c < outChannels; c++) {
        const sc = scale[c]!;
        for (let i = c * per; i < (c + 1) * per; i++) w[i] = kernel[i]! * sc;
        b[c] = bias[c]! * sc + shift[c]!;
      }
      folded.set(next.name, layer);
    }
    const conv = g.node('Conv', [x.name, g.floats(`${base}_W`, kdims, w), g.floats(`${base}_B`, [outChannels], b)], base, [
      A.ints('kernel_shape', kernelSize), A.ints('strides', strides), A.ints('dilations', dilation), A.ints('pads', pads), A.int('group', depthwise ? kdims[0]! / ((config.depthMultiplier as number | undefined) ?? 1) : 1),
    ]);
    return activation(g, act, { name: conv, rank: 4 }, base);
  };
}

function poolRule(op: 'MaxPool' | 'AveragePool'): LayerRule {
  return ({ g, layer, node, x, config, base }) => {
    const kernel = pair(config.poolSize as number[], 2);
    const strides = pair((config.strides as number[] | null) ?? kernel, 1);
    const pads = spatialPads(layer, node.inputTensors[0]!, kernel, strides, [1, 1]);
    return { name: g.node(op, [x.name], base, [A.ints('kernel_shape', kernel), A.ints('strides', strides), A.ints('pads', pads)]), rank: 4 };
  };
}

function globalPoolRule(op: 'GlobalAveragePool' | 'GlobalMaxPool'): LayerRule {
  return ({ g, x, config, base }) => {
    const pooled = g.node(op, [x.name], base);
    return config.keepdims ? { name: pooled, rank: 4 } : { name: g.node('Flatten', [pooled], base, [A.int('axis', 1)]), rank: 2 };
  };
}

function mergeRule(op: 'Add' | 'Mul'): LayerRule {
  return ({ g, ins, x, base }) => {
    let acc = ins[0]!.name;
    for (const other of ins.slice(1)) acc = g.node(op, [acc, other.name], base);
    return { name: acc, rank: x.rank };
  };
}

const identity: LayerRule = ({ x }) => x;

/** One rule per Keras layer class: the ONNX nodes (NCHW inside the graph) that compute it. */
const LAYER_RULES: Record<string, LayerRule> = {
  Conv2D: convRule(false),
  DepthwiseConv2D: convRule(true),
  BatchNormalization: ({ g, layer, x, out, base, folded }) => {
    if (folded.has(layer.name)) return x;
    const channels = out.shape.at(-1) as number;
    const { scale, shift } = bnAffine(layer, channels);
    const shape = x.rank === 4 ? [channels, 1, 1] : [channels];
    return { name: g.node('Add', [g.node('Mul', [x.name, g.floats(`${base}_scale`, shape, scale)], base), g.floats(`${base}_shift`, shape, shift)], base), rank: x.rank };
  },
  Activation: ({ g, x, config, base }) => activation(g, config.activation as string, x, base),
  ReLU: ({ g, x, config, base }) => {
    const max = config.maxValue as number | null | undefined;
    return max === null || max === undefined ? activation(g, 'relu', x, base) : { name: g.node('Clip', [x.name, g.scalar(`${base}_min`, 0), g.scalar(`${base}_max`, max)], base), rank: x.rank };
  },
  ZeroPadding2D: ({ g, x, config, base }) => {
    const p = config.padding as [[number, number], [number, number]];
    return { name: g.node('Pad', [x.name, g.int64s(`${base}_pads`, [0, 0, p[0][0], p[1][0], 0, 0, p[0][1], p[1][1]])], base), rank: 4 };
  },
  MaxPooling2D: poolRule('MaxPool'),
  AveragePooling2D: poolRule('AveragePool'),
  GlobalAveragePooling2D: globalPoolRule('GlobalAveragePool'),
  GlobalMaxPooling2D: globalPoolRule('GlobalMaxPool'),
  Add: mergeRule('Add'),
  Multiply: mergeRule('Mul'),
  Concatenate: ({ g, ins, x, config, base }) => {
    const axis = (config.axis as number | undefined) ?? -1;
    const rank = x.rank;
    const keras = axis < 0 ? rank + axis : axis;
    const onnxAxis = rank === 4 ? [0, 2, 3, 1][keras]! : keras;
    return { name: g.node('Concat', ins.map((v) => v.name), base, [A.int('axis', onnxAxis)]), rank };
  },
  Dense: ({ g, layer, x, config, base }) => {
    if (x.rank !== 2) throw new OnnxExportError(`${layer.name}: Dense on a rank-${x.rank} input has no ONNX export.`);
    const w = weightsOf(layer);
    const k = w.get('kernel')!;
    const units = k.shape[1]!;
    const gemm = g.node('Gemm', [x.name, g.floats(`${base}_W`, k.shape, k.data), g.floats(`${base}_B`, [units], w.get('bias')?.data ?? new Float32Array(units))], base);
    return activation(g, (config.activation as string | undefined) ?? 'linear', { name: gemm, rank: 2 }, base);
  },
  Flatten: ({ g, x, base }) => ({ name: g.node('Flatten', [toNhwc(g, x, base)], base, [A.int('axis', 1)]), rank: 2 }),
  Reshape: ({ g, x, config, base }) => {
    const target = config.targetShape as number[];
    const reshaped = g.node('Reshape', [toNhwc(g, x, base), g.int64s(`${base}_shape`, [0, ...target])], base);
    return target.length === 3 ? { name: g.node('Transpose', [reshaped], `${base}_nchw`, [A.ints('perm', [0, 3, 1, 2])]), rank: 4 } : { name: reshaped, rank: target.length + 1 };
  },
  Dropout: identity,
  SpatialDropout2D: identity,
  Rescaling: ({ g, x, config, base }) => ({ name: g.node('Add', [g.node('Mul', [x.name, g.scalar(`${base}_scale`, config.scale as number)], base), g.scalar(`${base}_offset`, (config.offset as number | undefined) ?? 0)], base), rank: x.rank }),
  TFOpLambda: ({ g, x, config, base }) => {
    const op = (config.op as string) === 'multiply' ? 'Mul' : 'Add';
    return { name: g.node(op, [x.name, g.scalar(`${base}_operand`, config.operand as number)], base), rank: x.rank };
  },
};

/** Serialises `model` as an ONNX ModelProto (opset 13). */
export function exportOnnx(model: LayersModel, options: { name?: string; metadata?: Record<string, string> } = {}): Uint8Array {
  const g = new GraphBuilder();
  const values = new Map<number, Value>();
  const uses = consumers(model);
  const bnAfter = new Map<number, Layer>();
  for (const l of model.layers) {
    const t = l.inboundNodes[0]?.inputTensors[0];
    if (t && l.getClassName() === 'BatchNormalization') bnAfter.set(t.id, l);
  }
  const folded = new Map<string, Layer>();
  const inputs: P.IValueInfoProto[] = [];
  const inputIds = new Set(model.inputs.map((t) => t.id));
  const dims = (shape: (number | null)[]) => ({ dim: shape.map((d, i) => (d === null || i === 0 ? { dimParam: i === 0 ? 'N' : `d${i}` } : { dimValue: d })) });

  model.inputs.forEach((t) => {
    inputs.push({ name: t.sourceLayer.name, type: { tensorType: { elemType: FLOAT, shape: dims(t.shape) } } });
    values.set(t.id, t.shape.length === 4 ? { name: g.node('Transpose', [t.sourceLayer.name], `${t.sourceLayer.name}_nchw`, [A.ints('perm', [0, 3, 1, 2])]), rank: 4 } : { name: t.sourceLayer.name, rank: t.shape.length });
  });

  for (const layer of model.layers) {
    const node = layer.inboundNodes[0];
    if (!node) continue;
    const cls = layer.getClassName();
    if (cls === 'InputLayer' && node.outputTensors.every((t) => inputIds.has(t.id))) continue;
    const ins = node.inputTensors.map((t) => {
      const v = values.get(t.id);
      if (!v) throw new OnnxExportError(`${layer.name}: its input from '${t.sourceLayer.name}' is not part of the exported graph.`);
      return v;
    });
    const rule = LAYER_RULES[cls];
    if (!rule) throw new OnnxExportError(`${layer.name}: layer class ${cls} has no ONNX export.`);
    const out = node.outputTensors[0]!;
    values.set(out.id, rule({ g, layer, node, ins, x: ins[0]!, out, config: layer.getConfig() as Record<string, unknown>, base: layer.name, bnAfter, uses, folded }));
  }

  const outputs: P.IValueInfoProto[] = model.outputs.map((t, i) => {
    const v = values.get(t.id);
    if (!v) throw new OnnxExportError(`Output ${i} ('${t.sourceLayer.name}') was not produced.`);
    const name = `output_${i}`;
    if (v.rank === 4) g.node('Transpose', [v.name], name, [A.ints('perm', [0, 2, 3, 1])], name);
    else g.node('Identity', [v.name], name, [], name);
    return { name, type: { tensorType: { elemType: FLOAT, shape: dims(t.shape) } } };
  });

  const proto = onnx.ModelProto.create({
    irVersion: 7,
    producerName: 'tl',
    opsetImport: [{ domain: '', version: OPSET }],
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: { name: options.name ?? model.name, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  });
  return onnx.ModelProto.encode(proto).finish();
}
