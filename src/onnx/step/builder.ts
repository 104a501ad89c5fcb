// The train-step compiler's graph builder: node helpers over NHWC values, a convolution window's geometry, and the
// error for a tail the compiler cannot differentiate.
import type { Layer } from '../../backend/index.js';
import { TlError } from '../../errors.js';
import type { onnx as P } from 'onnx-proto';
import { A, FLOAT, GraphBuilder, INT64, pair, samePads, type Attr } from '../graph.js';

/** A tail that the compiler cannot differentiate; the message names the layer. */
export class TrainStepCompileError extends TlError {
  constructor(message: string) {
    super('E_TRAIN_COMPILE', message);
  }
}

/** ONNX Runtime's blocked-channel (NCHWc) contrib domain: CPU kernels of its own layout optimiser. */
export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

/** A value in the graph: its name and static shape (batch as -1). */
export interface Value {
  name: string;
  shape: number[];
}

export class StepBuilder extends GraphBuilder {
  /** Operator domains besides the default one that the graph uses. */
  readonly domains = new Set<string>();

  op(type: string, inputs: string[], attrs: Attr[] = []): string {
    return this.node(type, inputs, type.toLowerCase(), attrs);
  }
  /** A node of ONNX Runtime's NCHWc domain. */
  nchwc(type: string, inputs: string[], attrs: Attr[] = []): string {
    this.domains.add(NCHWC_DOMAIN);
    const out = this.fresh(`nchwc_${type.toLowerCase()}`);
    this.nodes.push({ opType: type, domain: NCHWC_DOMAIN, input: inputs, output: [out], name: this.fresh(`nchwc_${type}`), attribute: attrs });
    return out;
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
  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x], [A.ints('perm', perm)]);
  }
  /** The sum of values of one shape, as a chain of Adds (ONNX Runtime threads Add; its variadic Sum runs on one). */
  add(xs: string[]): string {
    return xs.slice(1).reduce((acc, t) => this.op('Add', [acc, t]), xs[0]!);
  }
  /**
   * An If node over a boolean scalar: each branch is built by its function on a builder of its own (reading values
   * of this graph by name) and returns its one float output.
   */
  ifElse(cond: string, then: (b: StepBuilder) => string, otherwise: (b: StepBuilder) => string): string {
    const branch = (build: (b: StepBuilder) => string, name: string): P.IGraphProto => {
      const b = new StepBuilder(this.fresh(name));
      const out = build(b);
      for (const domain of b.domains) this.domains.add(domain);
      return { name: this.fresh(name), node: b.nodes, initializer: b.initializers, output: [{ name: out, type: { tensorType: { elemType: FLOAT } } }] };
    };
    const out = this.fresh('if');
    this.nodes.push({ opType: 'If', input: [cond], output: [out], name: this.fresh('If'), attribute: [A.graph('then_branch', branch(then, 'then')), A.graph('else_branch', branch(otherwise, 'else'))] });
    return out;
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
export interface Window {
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

export function windowOf(layer: Layer, input: Value, kernel: number[]): Window {
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

/** A 1x1 window with stride 1 and no padding: the convolution is a matrix product over the channels. */
export const isPointwise = (win: Window): boolean => win.kh === 1 && win.kw === 1 && win.stride.every((s) => s === 1) && win.pads.every((p) => p === 0);
