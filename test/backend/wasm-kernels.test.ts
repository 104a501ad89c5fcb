import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { randomArray, relativeError } from '../helpers/tensors.js';

let tf: Tf;

beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

type Shape4 = [number, number, number, number];

/** Gradients of sum(op(x, w) * dy) w.r.t. x and w, computed on `backend`. */
async function grads(backend: 'cpu' | 'wasm', op: (x: any, w: any) => any, xShape: Shape4, wShape: Shape4, seed: number): Promise<{ y: Float32Array; dx: Float32Array; dw: Float32Array }> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor(randomArray(xShape.reduce((a, b) => a * b), seed), xShape);
    const w = tf.tensor(randomArray(wShape.reduce((a, b) => a * b), seed + 1), wShape);
    const y = op(x, w) as ReturnType<Tf['conv2d']>;
    const dy = tf.tensor(randomArray(y.size, seed + 2), y.shape);
    const [dx, dw] = tf.grads((a: any, b: any) => op(a, b))([x, w], dy);
    return { y: y.dataSync() as Float32Array, dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array };
  });
}

async function compare(op: (x: any, w: any) => any, xShape: Shape4, wShape: Shape4, seed = 7): Promise<void> {
  const ref = await grads('cpu', op, xShape, wShape, seed);
  const got = await grads('wasm', op, xShape, wShape, seed);
  expect(relativeError(ref.y, got.y)).toBeLessThan(1e-5);
  expect(relativeError(ref.dx, got.dx)).toBeLessThan(1e-5);
  expect(relativeError(ref.dw, got.dw)).toBeLessThan(1e-5);
}

async function compareInputGrad(op: (x: any) => any, xShape: Shape4, seed = 7): Promise<void> {
  const run = async (backend: 'cpu' | 'wasm') => {
    await tf.setBackend(backend);
    return tf.tidy(() => {
      const x = tf.tensor(randomArray(xShape.reduce((a, b) => a * b), seed), xShape);
      const y = op(x) as ReturnType<Tf['maxPool']>;
      const dy = tf.tensor(randomArray(y.size, seed + 2), y.shape);
      return { y: y.dataSync(), dx: tf.grad((a: any) => op(a))(x, dy).dataSync() };
    });
  };
  const ref = await run('cpu');
  const got = await run('wasm');
  expect(relativeError(ref.y, got.y)).toBeLessThan(1e-5);
  expect(relativeError(ref.dx, got.dx)).toBeLessThan(1e-5);
}

const kernels = [1, 2, 3, 5, 7];
const strides = [1, 2];
const pads = ['same', 'valid'] as const;

describe('wasm conv2d gradients match cpu', () => {
  for (const k of kernels) for (const s of strides) for (const p of pads) {
    it(`${k}x${k} stride ${s} ${p}`, async () => {
      await compare((x, w) => tf.conv2d(x, w, s, p), [2, 11, 9, 3], [k, k, 3, 4], k * 10 + s);
    });
  }
  it('fused conv2d with bias and relu6 (the path tf.layers take)', async () => {
    await compare((x, w) => tf.fused.conv2d({ x, filter: w, strides: 2, pad: 'same', bias: tf.ones([5]), activation: 'relu6' }), [2, 10, 10, 3], [3, 3, 3, 5]);
  });
  it('explicit padding (ZeroPadding2D-style asymmetric)', async () => {
    await compare((x, w) => tf.conv2d(x, w, 2, [[0, 0], [0, 1], [1, 0], [0, 0]]), [1, 9, 8, 2], [3, 3, 2, 3]);
  });
});

describe('wasm depthwise conv2d gradients match cpu', () => {
  for (const k of kernels) for (const s of strides) for (const p of pads) for (const m of [1, 2]) {
    it(`${k}x${k} stride ${s} ${p} multiplier ${m}`, async () => {
      await compare((x, w) => tf.depthwiseConv2d(x, w, s, p), [2, 11, 10, 3], [k, k, 3, m], k * 100 + s * 10 + m);
    });
  }
  it('fused depthwise with bias and relu6', async () => {
    await compare((x, w) => tf.fused.depthwiseConv2d({ x, filter: w, strides: 1, pad: 'same', bias: tf.ones([4]), activation: 'relu6' }), [2, 8, 8, 4], [3, 3, 4, 1]);
  });
});

describe('wasm max-pool gradient matches cpu', () => {
  for (const [f, s, p] of [[2, 2, 'valid'], [3, 2, 'valid'], [3, 2, 'same'], [3, 1, 'same'], [2, 1, 'valid']] as const) {
    it(`${f}x${f} stride ${s} ${p}, 5 channels`, async () => {
      await compareInputGrad((x) => tf.maxPool(x, f, s, p), [2, 9, 8, 5], f * 10 + s);
    });
  }
  it('ties go to the first maximum, as on cpu', async () => {
    const run = async (backend: 'cpu' | 'wasm') => {
      await tf.setBackend(backend);
      return tf.tidy(() => {
        const x = tf.tensor4d([1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2], [1, 4, 2, 2]);
        return tf.grad((a: any) => tf.maxPool(a, 2, 1, 'valid'))(x, tf.ones([1, 3, 1, 2])).dataSync();
      });
    };
    expect(Array.from(await run('wasm'))).toEqual(Array.from(await run('cpu')));
  });
});

describe('wasm avg-pool gradient matches cpu', () => {
  for (const [f, s, p] of [[2, 2, 'valid'], [3, 2, 'same'], [7, 1, 'valid']] as const) {
    it(`${f}x${f} stride ${s} ${p}`, async () => {
      await compareInputGrad((x) => tf.avgPool(x, f, s, p), [2, 9, 8, 5], f + s);
    });
  }
});

describe('wasm matMul with transposed operands', () => {
  for (const [ta, tb] of [[true, false], [false, true], [true, true]] as const) {
    it(`transposeA=${ta} transposeB=${tb}, batched`, async () => {
      const run = async (backend: 'cpu' | 'wasm') => {
        await tf.setBackend(backend);
        return tf.tidy(() => {
          const a = tf.tensor(randomArray(2 * 6 * 5, 1), ta ? [2, 5, 6] : [2, 6, 5]);
          const b = tf.tensor(randomArray(2 * 5 * 4, 2), tb ? [2, 4, 5] : [2, 5, 4]);
          return tf.matMul(a, b, ta, tb).dataSync();
        });
      };
      expect(relativeError(await run('cpu'), await run('wasm'))).toBeLessThan(1e-5);
    });
  }
});

describe('wasm training kernels do not leak tensors', () => {
  it('conv, depthwise and max-pool gradients leave numTensors unchanged', async () => {
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = tf.randomNormal([1, 8, 8, 3]);
      const w = tf.randomNormal([3, 3, 3, 2]);
      const d = tf.randomNormal([3, 3, 3, 1]);
      tf.grads((a: any, b: any, c: any) => tf.add(tf.sum(tf.conv2d(a, b, 2, 'same')), tf.add(tf.sum(tf.depthwiseConv2d(a, c, 1, 'same')), tf.sum(tf.maxPool(a, 3, 2, 'same')))))([x, w, d]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('BatchNorm gradient without tiling', () => {
  it('equals autodiff through the same formula in primitive ops, for x, mean, variance, scale and offset', async () => {
    for (const backend of ['cpu', 'wasm'] as const) {
      await tf.setBackend(backend);
      const [fused, primitive] = tf.tidy(() => {
        const x = tf.tensor(randomArray(2 * 5 * 4 * 3, 1), [2, 5, 4, 3]);
        const mean = tf.tensor1d(randomArray(3, 2));
        const variance = tf.add(tf.abs(tf.tensor1d(randomArray(3, 3))), 0.5) as ReturnType<Tf['tensor1d']>;
        const scale = tf.tensor1d(randomArray(3, 4));
        const offset = tf.tensor1d(randomArray(3, 5));
        const dy = tf.tensor(randomArray(2 * 5 * 4 * 3, 6), [2, 5, 4, 3]);
        const args = [x, mean, variance, scale, offset];
        const a = tf.grads((...t: any[]) => tf.batchNorm(t[0], t[1], t[2], t[4], t[3], 1e-3))(args, dy);
        const b = tf.grads((...t: any[]) => tf.add(tf.mul(tf.mul(tf.sub(t[0], t[1]), tf.rsqrt(tf.add(t[2], 1e-3))), t[3]), t[4]))(args, dy);
        return [a.map((g) => g.dataSync()), b.map((g) => g.dataSync())];
      });
      fused.forEach((g, i) => expect(relativeError(primitive[i]!, g), `${backend} input ${i}`).toBeLessThan(1e-5));
    }
  });
});

describe('clipByValue gradient (ReLU6 layers)', () => {
  it("passes dy exactly where tfjs's min <= x <= max does, boundaries and NaN included", async () => {
    const x = [-1, 0, 0.5, 3, 6, 6.5, Number.NaN, 5.999];
    const dy = [1, 2, 3, 4, 5, 6, 7, 8];
    const expected = x.map((v, i) => (v >= 0 && v <= 6 ? dy[i]! : 0));
    for (const backend of ['cpu', 'wasm'] as const) {
      await tf.setBackend(backend);
      const got = tf.tidy(() => tf.grad((t: any) => tf.clipByValue(t, 0, 6))(tf.tensor1d(x), tf.tensor1d(dy)).dataSync());
      expect(Array.from(got), backend).toEqual(expected);
    }
  });
});
