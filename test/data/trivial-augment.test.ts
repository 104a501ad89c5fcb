// TrivialAugment's operations against what PIL's do, and the level as a whole: seeded, one operation per image.
import { describe, expect, it } from 'vitest';
import { augmentImage } from '../../src/data/augment.js';
import { colourOp, erase, magnitude, trivialAugment } from '../../src/data/trivial-augment.js';
import { prng } from '../../src/util/random.js';

const size = 16;
/** A horizontal gradient: red 40..190, green constant 100, blue 200 - red. */
const image = Uint8Array.from({ length: size * size * 3 }, (_, i) => {
  const x = Math.floor(i / 3) % size;
  return [40 + x * 10, 100, 160 - x * 10][i % 3]!;
});
const channel = (img: Uint8Array, c: number) => Array.from(img.filter((_, i) => i % 3 === c));

describe('TrivialAugment operations', () => {
  it('solarize inverts the values at or above the threshold; posterize keeps the top bits', () => {
    const s = colourOp('solarize', image, size, 128);
    image.forEach((v, i) => expect(s[i]).toBe(v >= 128 ? 255 - v : v));
    const p = colourOp('posterize', image, size, 2);
    image.forEach((v, i) => expect(p[i]).toBe(v & 0xc0));
  });

  it('autoContrast stretches each channel to 0-255; a flat channel stays', () => {
    const a = colourOp('autoContrast', image, size, 0);
    expect([Math.min(...channel(a, 0)), Math.max(...channel(a, 0))]).toEqual([0, 255]);
    expect(new Set(channel(a, 1))).toEqual(new Set([100]));
  });

  it('equalize spreads a two-valued channel over the range (as PIL, which leaves too small a histogram alone)', () => {
    const big = 64;
    const two = Uint8Array.from({ length: big * big * 3 }, (_, i) => (Math.floor(i / 3) % big < big / 2 ? 50 : 60));
    expect(new Set(colourOp('equalize', two, big, 0))).toEqual(new Set([0, 255]));
    // 16x16 pixels, half and half: PIL's step (128 // 255) is 0, and the image stays as it is.
    const small = two.subarray(0, size * size * 3);
    expect(Buffer.from(colourOp('equalize', small, size, 0)).equals(Buffer.from(small))).toBe(true);
  });

  it('brightness, color and contrast blend towards black, gray and the mean as PIL does', () => {
    const dark = colourOp('brightness', image, size, -0.5);
    image.forEach((v, i) => expect(Math.abs(dark[i]! - v * 0.5)).toBeLessThanOrEqual(0.5));
    const grayish = colourOp('color', image, size, -0.99);
    for (let p = 0; p < size * size; p++) expect(Math.max(...[0, 1, 2].map((c) => grayish[p * 3 + c]!)) - Math.min(...[0, 1, 2].map((c) => grayish[p * 3 + c]!))).toBeLessThanOrEqual(3);
    const flat = colourOp('contrast', image, size, -0.99);
    expect(Math.max(...flat) - Math.min(...flat)).toBeLessThanOrEqual(3);
  });

  it("magnitudes follow torchvision's TrivialAugmentWide ranges", () => {
    expect(magnitude('rotate', 30, 224, 1)).toBe(135);
    expect(magnitude('rotate', 0, 224, -1)).toBe(-0);
    expect(magnitude('posterize', 30, 224, 1)).toBe(2);
    expect(magnitude('solarize', 30, 224, 1)).toBe(0);
    expect(magnitude('translateX', 30, 224, -1)).toBe(-32);
  });

  it('random erasing fills one rectangle and leaves the rest', () => {
    const out = erase(image, size, prng(3));
    const changed = [...Array(size * size).keys()].filter((p) => [0, 1, 2].some((c) => out[p * 3 + c] !== image[p * 3 + c]));
    expect(changed.length).toBeGreaterThan(0);
    const xs = changed.map((p) => p % size);
    const ys = changed.map((p) => Math.floor(p / size));
    // Every changed pixel lies in the bounding box of the changed ones, which is at most a third of the image.
    expect((Math.max(...xs) - Math.min(...xs) + 1) * (Math.max(...ys) - Math.min(...ys) + 1)).toBeLessThanOrEqual((size * size) / 3 + 2 * size);
  });

  it('is seeded: the same seed gives the same image, other seeds other images', async () => {
    const a = await trivialAugment(image, size, prng(5));
    const b = await trivialAugment(image, size, prng(5));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const level = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => augmentImage(image, size, 'trivial', seed)));
    expect(new Set(level.map((x) => Buffer.from(x).toString('base64'))).size).toBe(6);
    expect(level.every((x) => x.length === image.length)).toBe(true);
  });
});

describe('the contact sheet of augmented training images', () => {
  it('report.html of an augmented run shows 16 training images as the level draws them; an unaugmented run has none', async () => {
    const { runTl } = await import('../helpers/cli.js');
    const { makeColourDataset } = await import('../helpers/synthetic.js');
    const { tempDir } = await import('../helpers/tmp.js');
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const sharp = (await import('sharp')).default;
    const data = tempDir();
    await makeColourDataset(data, 2, 14, 32);
    const html: Record<string, string> = {};
    for (const level of ['trivial', 'none']) {
      const out = join(tempDir(), level);
      const r = await runTl(['finetune', data, '--augment', level, '--epochs', '1', '--input-size', '32', '--freeze', 'all', '--batch-size', '4', '--out', out, '-q'], { TL_HOME: tempDir() });
      expect(r.exitCode, r.stderr).toBe(0);
      html[level] = readFileSync(join(out, 'report.html'), 'utf8');
    }
    const src = /<figure id="augment-sheet"><img src="data:image\/jpeg;base64,([^"]+)"/.exec(html['trivial']!)?.[1];
    expect(src).toBeDefined();
    // 20 training images (14 per class, 4 held out of each): a 4 x 4 grid of 32 px tiles, 4 px apart.
    const meta = await sharp(Buffer.from(src!, 'base64')).metadata();
    expect([meta.width, meta.height]).toEqual([4 * 32 + 3 * 4, 4 * 32 + 3 * 4]);
    expect(html['trivial']).toContain('as --augment trivial shows them');
    expect(html['none']).not.toContain('augment-sheet');
  }, 120_000);
});
