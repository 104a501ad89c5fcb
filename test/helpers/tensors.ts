// Deterministic random data and error measures for numerical tests.
import { prng } from '../../src/util/random.js';

/** Seeded pseudo-random floats in [-1, 1). */
export function randomArray(size: number, seed: number): Float32Array {
  const rand = prng(seed);
  return Float32Array.from({ length: size }, () => rand() * 2 - 1);
}

/** max |a - b| / max |a|: the error relative to the reference's scale. */
export function relativeError(reference: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (reference.length !== actual.length) throw new Error(`length ${reference.length} != ${actual.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs((reference[i] as number) - (actual[i] as number)));
    scale = Math.max(scale, Math.abs(reference[i] as number));
  }
  return scale === 0 ? diff : diff / scale;
}
