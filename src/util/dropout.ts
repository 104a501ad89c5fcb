// Dropout masks drawn exactly as TensorFlow.js's tf.dropout(ones, rate, undefined, seed) draws them, without
// TensorFlow.js: uniform numbers from seedrandom's alea stream (the generator tf.randomUniform seeds with the seed's
// string), stored as float32, then floor(u + keep) / keep in float32 arithmetic.
import seedrandom from 'seedrandom';

/** `count` mask values for dropout at `rate` with `seed`: 0, or 1 / (1 - rate) rounded to float32. */
export function dropoutMask(count: number, rate: number, seed: number): Float32Array {
  const mask = new Float32Array(count);
  if (rate === 0) return mask.fill(1);
  const random = seedrandom.alea(seed.toString());
  const keep = Math.fround(1 - rate);
  const kept = Math.fround(1 / keep);
  // Each step rounds as float32 does: the stored uniform number, the sum with `keep` (exact in a double, then
  // rounded), the floor, and the quotient (1 / keep rounded once).
  for (let i = 0; i < count; i++) mask[i] = Math.floor(Math.fround(Math.fround(random()) + keep)) === 0 ? 0 : kept;
  return mask;
}
