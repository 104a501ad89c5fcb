// Quantized TensorFlow.js weights, in the weights manifest's own format (what tensorflowjs_converter's
// --quantize_float16 and --quantize_uint8 write, and what tf.loadLayersModel decodes back to float32 when it loads):
// float16 halves weights.bin; uint8 quarters it with one affine map per weight (min and scale, zero exact). Small
// weights (biases, BatchNorm statistics) stay float32.
import { Float16Array } from '@petamoriken/float16';

export const WEIGHT_QUANTIZATIONS = ['float16', 'uint8'] as const;
export type WeightQuantization = (typeof WEIGHT_QUANTIZATIONS)[number];

/** A weights-manifest entry, as tfjs's io writes it (quantization added here). */
export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: 'float16' | 'uint8'; min?: number; scale?: number; original_dtype?: string };
}

/**
 * Weights with fewer values stay float32: biases and BatchNorm's statistics, a sliver of the file, where one uint8
 * range per tensor (or float16's 11 bits, for a variance near zero) costs the most accuracy.
 */
const SMALL = 4096;

/** The weights in `data` (laid out as `specs` say) stored as `how`; non-float32 weights stay as they are. */
export function quantizeWeights(specs: WeightSpec[], data: ArrayBuffer, how: WeightQuantization): { specs: WeightSpec[]; data: Uint8Array } {
  const parts: Uint8Array[] = [];
  const out: WeightSpec[] = [];
  let offset = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = count * (spec.dtype === 'float32' || spec.dtype === 'int32' ? 4 : 1);
    const raw = new Uint8Array(data, offset, bytes);
    offset += bytes;
    if (spec.dtype !== 'float32' || spec.quantization || count < SMALL) {
      parts.push(raw.slice());
      out.push(spec);
      continue;
    }
    const values = new Float32Array(raw.slice().buffer);
    if (how === 'float16') {
      const half = new Float16Array(values);
      parts.push(new Uint8Array(half.buffer));
      out.push({ ...spec, quantization: { dtype: 'float16', original_dtype: 'float32' } });
      continue;
    }
    let lo = 0;
    let hi = 0;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    // The range holds 0, moved so that 0 is one of the 256 values (zero weights and padding stay exactly zero).
    const scale = hi > lo ? (hi - lo) / 255 : 1;
    const zero = Math.round(-lo / scale);
    const min = -zero * scale;
    const q = Uint8Array.from(values, (v) => Math.max(0, Math.min(255, Math.round((v - min) / scale))));
    parts.push(q);
    out.push({ ...spec, quantization: { dtype: 'uint8', min, scale, original_dtype: 'float32' } });
  }
  if (offset !== data.byteLength) throw new Error(`the weights manifest describes ${offset} bytes, the weights hold ${data.byteLength}`);
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return { specs: out, data: joined };
}
