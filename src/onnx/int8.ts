// Statically quantized ONNX models in the QDQ format, as ONNX Runtime's own quantization tool writes them: weights
// int8, symmetric, one scale per output channel; activations uint8 with a scale and zero point from the range they
// take on calibration images (percentiles, averaged over batches); biases int32 at the input's scale times the weight's. ONNX Runtime
// fuses DequantizeLinear -> Conv -> QuantizeLinear into an integer convolution (QLinearConv; VNNI/AMX where the CPU
// has them). A Clip or Relu after a convolution is left to the QuantizeLinear after it, whose range lies inside the
// clip (ONNX Runtime then drops it); a zero Pad before a convolution becomes the convolution's own padding. The
// classifier head (Gemm) and the softmax stay float32.
import type { onnx as P } from 'onnx-proto';
import { A, FLOAT, INT64, onnx } from './graph.js';
import { OnnxSession } from './runtime.js';

const UINT8 = 2;
const INT8 = 3;
const INT32 = 6;

/** Operators whose float inputs and outputs are quantized (ONNX Runtime has integer kernels or QDQ rules for them). */
const QUANTIZED = new Set(['Conv', 'Add', 'Clip', 'Relu', 'GlobalAveragePool', 'MaxPool', 'AveragePool', 'Concat']);
const ACTIVATIONS = new Set(['Clip', 'Relu']);

export interface Int8Result {
  bytes: Uint8Array;
  /** Activation tensors given a QuantizeLinear/DequantizeLinear pair. */
  activations: number;
  /** Convolutions whose weights are int8. */
  convolutions: number;
  calibrationImages: number;
}

export interface CalibrationBatch {
  data: Float32Array;
  shape: number[];
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A float32 or int64 initializer's values. */
function valuesOf(t: P.ITensorProto): number[] {
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  if (t.dataType === FLOAT) return raw ? Array.from(new Float32Array(Uint8Array.from(raw).buffer)) : (t.floatData ?? []);
  if (t.dataType === INT64) return raw ? Array.from(new BigInt64Array(Uint8Array.from(raw).buffer), Number) : (t.int64Data ?? []).map(Number);
  throw new Error(`initializer ${t.name} has data type ${t.dataType}`);
}

/** Folds a zero, constant-mode Pad of the spatial axes into the one Conv that reads it. */
function foldPads(graph: P.IGraphProto, inits: Map<string, P.ITensorProto>): void {
  const nodes = graph.node ?? [];
  const readers = (name: string) => nodes.filter((n) => (n.input ?? []).includes(name));
  const folded = new Set<P.INodeProto>();
  for (const pad of nodes) {
    if (pad.opType !== 'Pad') continue;
    const mode = pad.attribute?.find((a) => a.name === 'mode');
    if (mode && Buffer.from(mode.s ?? []).toString() !== 'constant') continue;
    const pads = inits.get(pad.input?.[1] ?? '');
    const value = pad.input?.[2] ? inits.get(pad.input[2]) : undefined;
    if (!pads || (pad.input?.[2] && (!value || valuesOf(value).some((v) => v !== 0)))) continue;
    const p = valuesOf(pads);
    if (p.length !== 8 || p[0] || p[1] || p[4] || p[5]) continue;
    const [conv, ...others] = readers(pad.output![0]!);
    if (!conv || others.length > 0 || conv.opType !== 'Conv' || conv.input?.[0] !== pad.output![0]) continue;
    const attrs = conv.attribute ?? [];
    if (attrs.some((a) => a.name === 'auto_pad' && Buffer.from(a.s ?? []).toString() !== 'NOTSET')) continue;
    const old = attrs.find((a) => a.name === 'pads')?.ints?.map(Number) ?? [0, 0, 0, 0];
    conv.attribute = [...attrs.filter((a) => a.name !== 'pads'), A.ints('pads', [old[0]! + p[2]!, old[1]! + p[3]!, old[2]! + p[6]!, old[3]! + p[7]!])];
    conv.input![0] = pad.input![0]!;
    folded.add(pad);
  }
  graph.node = nodes.filter((n) => !folded.has(n));
  const used = new Set(graph.node.flatMap((n) => n.input ?? []));
  graph.initializer = (graph.initializer ?? []).filter((t) => used.has(t.name!));
}

/** The activations to quantize: float inputs and outputs of QUANTIZED operators, but not a Conv/Add output only a Clip/Relu reads. */
function activationsOf(graph: P.IGraphProto, inits: Map<string, P.ITensorProto>): string[] {
  const nodes = graph.node ?? [];
  const readers = new Map<string, P.INodeProto[]>();
  for (const n of nodes) for (const i of n.input ?? []) readers.set(i, [...(readers.get(i) ?? []), n]);
  const chosen = new Set<string>();
  for (const n of nodes) {
    if (!QUANTIZED.has(n.opType ?? '')) continue;
    // Clip's bounds and Conv's weights and bias are initializers; their data input is the first.
    const inputs = n.opType === 'Clip' || n.opType === 'Conv' ? [n.input![0]!] : (n.input ?? []);
    for (const i of inputs) if (i && !inits.has(i)) chosen.add(i);
    for (const o of n.output ?? []) {
      const r = readers.get(o) ?? [];
      if ((n.opType === 'Conv' || n.opType === 'Add') && r.length === 1 && ACTIVATIONS.has(r[0]!.opType ?? '')) continue;
      chosen.add(o);
    }
  }
  return [...chosen];
}

const PERCENTILE = 0.9999;
const SAMPLE = 50_000;

/** The (1 - p)th and pth quantiles of `data`, from an evenly strided sample. */
function percentiles(data: Float32Array, p: number): [number, number] {
  const step = Math.max(1, Math.floor(data.length / SAMPLE));
  const sample = new Float32Array(Math.ceil(data.length / step));
  for (let k = 0, j = 0; k < data.length; k += step, j++) sample[j] = data[k]!;
  sample.sort();
  return [sample[Math.floor((sample.length - 1) * (1 - p))]!, sample[Math.ceil((sample.length - 1) * p)]!];
}

/** The range of every tensor in `names` over the calibration batches. */
async function calibrate(proto: P.ModelProto, names: string[], batches: AsyncIterable<CalibrationBatch>): Promise<{ ranges: Map<string, [number, number]>; images: number }> {
  const probe = onnx.ModelProto.decode(onnx.ModelProto.encode(proto).finish());
  const first = probe.graph!.output!.length;
  probe.graph!.output = [...probe.graph!.output!, ...names.map((name) => onnx.ValueInfoProto.create({ name }))];
  const session = await OnnxSession.open(onnx.ModelProto.encode(probe).finish());
  // Each batch's 0.01th and 99.99th percentiles (of an evenly strided sample of at most 50,000 values), averaged
  // over the batches: the few extreme values a min/max range would stretch the scale for are clipped instead.
  const sums = new Map<string, [number, number]>(names.map((n) => [n, [0, 0]]));
  let images = 0;
  let count = 0;
  try {
    for await (const batch of batches) {
      const outs = await session.run([batch]);
      names.forEach((name, i) => {
        const [lo, hi] = percentiles(outs[first + i]!, PERCENTILE);
        const s = sums.get(name)!;
        s[0] += lo;
        s[1] += hi;
      });
      images += batch.shape[0]!;
      count += 1;
    }
  } finally {
    await session.close();
  }
  const ranges = new Map([...sums].map(([n, [lo, hi]]) => [n, [lo / count, hi / count] as [number, number]]));
  if (images === 0) throw new Error('no calibration images');
  return { ranges, images };
}

/** uint8 scale and zero point for the range [lo, hi] (widened to hold 0, which must be exact). */
function activationParams([lo, hi]: [number, number]): { scale: number; zero: number } {
  const min = Math.min(lo, 0);
  const max = Math.max(hi, 0);
  const scale = max > min ? (max - min) / 255 : 1;
  return { scale, zero: Math.min(255, Math.max(0, Math.round(-min / scale))) };
}

/** `model` (float32, as tl exports it) quantized to int8 in the QDQ format, calibrated on `batches` (preprocessed inputs). */
export async function quantizeInt8(model: Uint8Array, batches: AsyncIterable<CalibrationBatch>): Promise<Int8Result> {
  const proto = onnx.ModelProto.decode(model);
  const graph = proto.graph!;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  foldPads(graph, inits);
  const names = activationsOf(graph, inits);
  const { ranges, images } = await calibrate(proto, names, batches);
  const added: P.ITensorProto[] = [];
  const tensor = (name: string, dataType: number, dims: number[], data: ArrayBufferView) => {
    added.push(onnx.TensorProto.create({ name, dataType, dims, rawData: bytesOf(data) }));
    return name;
  };
  const params = new Map<string, { scale: number; zero: number }>();
  const renamed = new Map<string, string>();
  const qdq = (t: string): P.INodeProto[] => {
    const p = activationParams(ranges.get(t)!);
    params.set(t, p);
    const s = tensor(`${t}_scale`, FLOAT, [], Float32Array.of(p.scale));
    const z = tensor(`${t}_zero`, UINT8, [], Uint8Array.of(p.zero));
    renamed.set(t, `${t}_dq`);
    return [
      { opType: 'QuantizeLinear', input: [t, s, z], output: [`${t}_q`], name: `${t}_QuantizeLinear` },
      { opType: 'DequantizeLinear', input: [`${t}_q`, s, z], output: [`${t}_dq`], name: `${t}_DequantizeLinear` },
    ];
  };
  const quantizedSet = new Set(names);
  const out: P.INodeProto[] = [];
  for (const input of graph.input ?? []) if (quantizedSet.has(input.name!)) out.push(...qdq(input.name!));
  let convolutions = 0;
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map((i) => renamed.get(i) ?? i);
    const x = node.input[0] ? /^(.*)_dq$/.exec(node.input[0])?.[1] : undefined;
    const w = node.opType === 'Conv' ? inits.get(node.input[1] ?? '') : undefined;
    if (w && x && params.has(x) && w.dataType === FLOAT) {
      // Weights: int8 per output channel (axis 0 of OIHW), symmetric; bias: int32 at input scale x weight scale.
      const values = Float32Array.from(valuesOf(w));
      const channels = Number(w.dims![0]);
      const per = values.length / channels;
      const scales = new Float32Array(channels);
      const q = new Int8Array(values.length);
      for (let c = 0; c < channels; c++) {
        let max = 0;
        for (let k = 0; k < per; k++) max = Math.max(max, Math.abs(values[c * per + k]!));
        scales[c] = max > 0 ? max / 127 : 1;
        for (let k = 0; k < per; k++) q[c * per + k] = Math.max(-127, Math.min(127, Math.round(values[c * per + k]! / scales[c]!)));
      }
      const name = w.name!;
      out.push({ opType: 'DequantizeLinear', input: [tensor(`${name}_int8`, INT8, w.dims!.map(Number), q), tensor(`${name}_scale`, FLOAT, [channels], scales), tensor(`${name}_zero`, INT8, [channels], new Int8Array(channels))], output: [`${name}_dq`], name: `${name}_DequantizeLinear`, attribute: [A.int('axis', 0)] });
      node.input[1] = `${name}_dq`;
      const b = node.input[2] ? inits.get(node.input[2]) : undefined;
      if (b && b.dataType === FLOAT) {
        const bias = valuesOf(b);
        const xs = params.get(x)!.scale;
        const bs = Float32Array.from(scales, (s) => s * xs);
        const bq = Int32Array.from(bias, (v, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / bs[c]!))));
        out.push({ opType: 'DequantizeLinear', input: [tensor(`${b.name!}_int32`, INT32, [channels], bq), tensor(`${b.name!}_scale`, FLOAT, [channels], bs), tensor(`${b.name!}_zero`, INT32, [channels], new Int32Array(channels))], output: [`${b.name!}_dq`], name: `${b.name!}_DequantizeLinear`, attribute: [A.int('axis', 0)] });
        node.input[2] = `${b.name!}_dq`;
      }
      convolutions++;
    }
    out.push(node);
    for (const o of node.output ?? []) if (quantizedSet.has(o)) out.push(...qdq(o));
  }
  graph.node = out;
  const used = new Set(out.flatMap((n) => n.input ?? []));
  graph.initializer = [...(graph.initializer ?? []).filter((t) => used.has(t.name!)), ...added];
  proto.metadataProps = [...(proto.metadataProps ?? []).filter((p) => p.key !== 'tl.quantization'), { key: 'tl.quantization', value: `int8 QDQ: ${convolutions} convolutions with int8 weights (per output channel, symmetric), ${names.length} activations uint8, ranges from the 0.01th to the 99.99th percentile on ${images} images; head and softmax float32` }];
  return { bytes: onnx.ModelProto.encode(proto).finish(), activations: names.length, convolutions, calibrationImages: images };
}
