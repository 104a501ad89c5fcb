// ONNX graph building shared by the exporter and the train-step compiler: nodes, initializers, attributes, and the
// TensorFlow conventions (same padding, BatchNormalization as an affine map) both need.
import onnxProto from 'onnx-proto';
import type { onnx as P } from 'onnx-proto';
import type { Layer, SymbolicTensor } from '../backend/index.js';
import { TlError } from '../errors.js';

export const { onnx } = onnxProto;

export const OPSET = 13;

export const FLOAT = 1;
export const INT64 = 7;

/** A layer or configuration the exporter cannot express. */
export class OnnxExportError extends TlError {
  constructor(message: string) {
    super('E_ONNX_EXPORT', message);
  }
}

export type Attr = { name: string; i?: number; f?: number; s?: Uint8Array; ints?: number[]; g?: P.IGraphProto; type: number };

export const A = {
  int: (name: string, i: number): Attr => ({ name, i, type: onnx.AttributeProto.AttributeType.INT }),
  float: (name: string, f: number): Attr => ({ name, f, type: onnx.AttributeProto.AttributeType.FLOAT }),
  ints: (name: string, ints: number[]): Attr => ({ name, ints, type: onnx.AttributeProto.AttributeType.INTS }),
  graph: (name: string, g: P.IGraphProto): Attr => ({ name, g, type: onnx.AttributeProto.AttributeType.GRAPH }),
};

export class GraphBuilder {
  readonly nodes: P.INodeProto[] = [];
  readonly initializers: P.ITensorProto[] = [];
  private counter = 0;

  /** `prefix` keeps a subgraph's names apart from its outer graph's (ONNX names are unique across scopes). */
  constructor(private readonly prefix = '') {}

  fresh(base: string): string {
    return `${this.prefix}${base}__${this.counter++}`;
  }

  node(op: string, inputs: string[], base: string, attrs: Attr[] = [], output?: string): string {
    const out = output ?? this.fresh(base);
    this.nodes.push({ opType: op, input: inputs, output: [out], name: this.fresh(`${base}_${op}`), attribute: attrs });
    return out;
  }

  floats(base: string, dims: number[], data: Float32Array): string {
    const name = this.fresh(base);
    this.initializers.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  int64s(base: string, values: number[]): string {
    const name = this.fresh(base);
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [values.length], dataType: INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  scalar(base: string, value: number): string {
    const name = this.fresh(base);
    this.initializers.push({ name, dims: [], dataType: FLOAT, rawData: new Uint8Array(Float32Array.of(value).buffer) });
    return name;
  }
}

/** A layer's weights by their short names (kernel, bias, gamma, ...). */
export function weightsOf(layer: Layer): Map<string, { shape: number[]; data: Float32Array }> {
  return new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!.replace(/:0$/, ''), { shape: w.shape as number[], data: w.read().dataSync() as Float32Array }]));
}

/** TensorFlow's 'same' padding: the extra pixel goes to the end. */
export function samePads(size: number, kernel: number, stride: number, dilation: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export function spatialPads(layer: Layer, input: SymbolicTensor, kernel: number[], strides: number[], dilation: number[]): number[] {
  const padding = (layer.getConfig() as { padding?: string }).padding;
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') throw new OnnxExportError(`${layer.name}: padding '${String(padding)}' is not supported.`);
  const [h, w] = [input.shape[1], input.shape[2]];
  if (typeof h !== 'number' || typeof w !== 'number') throw new OnnxExportError(`${layer.name}: 'same' padding needs a fixed input size; build the model with one.`);
  const [top, bottom] = samePads(h, kernel[0]!, strides[0]!, dilation[0]!);
  const [left, right] = samePads(w, kernel[1]!, strides[1]!, dilation[1]!);
  return [top, left, bottom, right];
}

export const pair = (v: number | number[] | undefined, fallback: number): number[] => (v === undefined ? [fallback, fallback] : Array.isArray(v) ? v : [v, v]);

/** Inference-mode BatchNormalization as a per-channel scale and shift. */
export function bnAffine(layer: Layer, channels: number): { scale: Float32Array; shift: Float32Array } {
  const w = weightsOf(layer);
  const eps = (layer.getConfig() as { epsilon?: number }).epsilon ?? 1e-3;
  const gamma = w.get('gamma')?.data;
  const beta = w.get('beta')?.data;
  const mean = w.get('moving_mean')!.data;
  const variance = w.get('moving_variance')!.data;
  const scale = new Float32Array(channels);
  const shift = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    scale[c] = (gamma ? gamma[c]! : 1) / Math.sqrt(variance[c]! + eps);
    shift[c] = (beta ? beta[c]! : 0) - mean[c]! * scale[c]!;
  }
  return { scale, shift };
}
