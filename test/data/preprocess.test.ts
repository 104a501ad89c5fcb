import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { augmentImage } from '../../src/data/augment.js';
import { preprocess } from '../../src/data/preprocess.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

describe('preprocessing modes', () => {
  const pixel = [255, 128, 0]; // R, G, B
  const run = (mode: 'caffe' | 'tf' | 'torch' | 'raw01') => Array.from(tf.tidy(() => preprocess(tf, tf.tensor4d(pixel, [1, 1, 1, 3]), mode).dataSync()));
  const close = (got: number[], want: number[]) => got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 4));

  it('caffe: BGR order minus the ImageNet means', () => close(run('caffe'), [0 - 103.939, 128 - 116.779, 255 - 123.68]));
  it('tf: scaled to [-1, 1]', () => close(run('tf'), [1, 128 / 127.5 - 1, -1]));
  it('torch: /255 then ImageNet mean and std', () => close(run('torch'), [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]));
  it('raw01: scaled to [0, 1]', () => close(run('raw01'), [1, 128 / 255, 0]));
});

describe('augmentation', () => {
  const size = 32;
  const image = Uint8Array.from({ length: size * size * 3 }, (_, i) => (i * 7) % 256);

  it('is repeatable for a seed and differs between seeds', async () => {
    const a = await augmentImage(image, size, 'standard', 11);
    const b = await augmentImage(image, size, 'standard', 11);
    const c = await augmentImage(image, size, 'standard', 12);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
    expect(a.length).toBe(image.length);
  });

  it('none returns the image untouched', async () => {
    expect(await augmentImage(image, size, 'none', 1)).toBe(image);
  });
});
