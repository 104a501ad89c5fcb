// Half-size ONNX models: every float32 weight stored as float16 and cast back to float32 when the session loads it
// (ONNX Runtime folds the Cast once), so the model computes in float32 as before from weights rounded to float16.
import { Float16Array } from '@petamoriken/float16';
import type { onnx as P } from 'onnx-proto';
import { A, FLOAT, onnx } from './graph.js';

/** ONNX's TensorProto data type of float16. */
const FLOAT16 = 10;

/** What the conversion did: how many weights went to float16, and how many stayed float32 (out of float16's range). */
export interface HalfPrecisionResult {
  bytes: Uint8Array;
  converted: number;
  kept: string[];
}

/** The model with its float32 initializers stored as float16 behind a Cast to float32. */
export function halfPrecision(model: Uint8Array): HalfPrecisionResult {
  const proto = onnx.ModelProto.decode(model);
  const graph = proto.graph!;
  const casts: P.INodeProto[] = [];
  const kept: string[] = [];
  let converted = 0;
  graph.initializer = (graph.initializer ?? []).map((t) => {
    if (t.dataType !== FLOAT || !t.rawData || t.rawData.length === 0) return t;
    const raw = t.rawData;
    const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const half = new Float16Array(values);
    // A weight beyond float16's range (65504) would become infinite: it stays float32.
    if (half.some((v, i) => !Number.isFinite(v) && Number.isFinite(values[i]!))) {
      kept.push(t.name!);
      return t;
    }
    converted++;
    const name = `${t.name!}_float16`;
    casts.push({ opType: 'Cast', input: [name], output: [t.name!], name: `${t.name!}_cast`, attribute: [A.int('to', FLOAT)] });
    return onnx.TensorProto.create({ name, dims: t.dims ?? [], dataType: FLOAT16, rawData: new Uint8Array(half.buffer) });
  });
  graph.node = [...casts, ...(graph.node ?? [])];
  return { bytes: onnx.ModelProto.encode(proto).finish(), converted, kept };
}
