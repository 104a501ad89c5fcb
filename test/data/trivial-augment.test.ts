// TrivialAugment's operations against what PIL's do, and the level as a whole: seeded, one operation per image.
import { describe, expect, it } from 'vitest';
import { augmentImage } from '../../src/data/augment.js';
import { parseAugmentLevel } from '../../src/data/modes.js';
import { applyOp, colourOp, erase, magnitude, randAugment, TRIVIAL_OPS, trivialAugment } from '../../src/data/trivial-augment.js';
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
    // torchvision rounds the posterize bits: 8 - round(6 m / 30), 7 at m = 3.
    expect(magnitude('posterize', 3, 224, 1)).toBe(7);
  });

  it("RandAugment's magnitudes follow torchvision's RandAugment ranges", () => {
    expect(magnitude('rotate', 30, 224, 1, 'rand')).toBe(30);
    expect(magnitude('rotate', 9, 224, -1, 'rand')).toBeCloseTo(-9, 10);
    expect(magnitude('shearX', 30, 224, 1, 'rand')).toBeCloseTo(0.3, 10);
    expect(magnitude('brightness', 15, 224, 1, 'rand')).toBeCloseTo(0.45, 10);
    expect(magnitude('translateY', 30, 331, 1, 'rand')).toBe(150);
    expect(magnitude('posterize', 30, 224, 1, 'rand')).toBe(4);
    expect(magnitude('posterize', 9, 224, 1, 'rand')).toBe(7);
    expect(magnitude('solarize', 15, 224, 1, 'rand')).toBe(127.5);
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

  it('RandAugment applies N operations in turn, each at magnitude M, then erases with probability 0.25', async () => {
    // A scripted source: the operation (its index's middle), the sign, ...; then the erasing draw.
    const script = (values: number[]) => {
      let i = 0;
      return () => values[i++]!;
    };
    const pick = (op: (typeof TRIVIAL_OPS)[number]) => (TRIVIAL_OPS.indexOf(op) + 0.5) / TRIVIAL_OPS.length;
    const m = 12;
    const got = await randAugment(image, size, script([pick('solarize'), 0.9, pick('brightness'), 0.1, 0.9]), 2, m);
    const solarized = colourOp('solarize', image, size, magnitude('solarize', m, size, 1, 'rand'));
    const want = colourOp('brightness', solarized, size, magnitude('brightness', m, size, -1, 'rand'));
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    // Three operations draw three times; the other order gives another image.
    const three = await randAugment(image, size, script([pick('posterize'), 0.9, pick('rotate'), 0.9, pick('contrast'), 0.9, 0.9]), 3, m);
    let expected = colourOp('posterize', image, size, magnitude('posterize', m, size, 1, 'rand'));
    expected = await applyOp('rotate', expected, size, magnitude('rotate', m, size, 1, 'rand'));
    expected = colourOp('contrast', expected, size, magnitude('contrast', m, size, 1, 'rand'));
    expect(Buffer.from(three).equals(Buffer.from(expected))).toBe(true);
    const swapped = await randAugment(image, size, script([pick('brightness'), 0.1, pick('solarize'), 0.9, 0.9]), 2, m);
    expect(Buffer.from(swapped).equals(Buffer.from(want))).toBe(false);
    // An erasing draw under 0.25 erases a rectangle.
    const erased = await randAugment(image, size, script([pick('identity'), 0.9, pick('identity'), 0.9, 0.1, ...Array(40).fill(0.5)]), 2, m);
    expect(Buffer.from(erased).equals(Buffer.from(image))).toBe(false);
  });

  it('rand levels are spelled once: rand is rand-n2-m9, N and M in either order, out-of-range ones refused', () => {
    expect(parseAugmentLevel('rand')).toBe('rand-n2-m9');
    expect(parseAugmentLevel('rand-m15')).toBe('rand-n2-m15');
    expect(parseAugmentLevel('rand-m5-n3')).toBe('rand-n3-m5');
    expect(parseAugmentLevel('trivial')).toBe('trivial');
    for (const bad of ['rand-m31', 'rand-n0', 'rand-n15', 'rand-n2-n3', 'rand-m9x', 'rand-', 'bogus']) expect(parseAugmentLevel(bad), bad).toBeNull();
  });

  it('is seeded: the same seed gives the same image, other seeds other images', async () => {
    const a = await trivialAugment(image, size, prng(5));
    const b = await trivialAugment(image, size, prng(5));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const level = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => augmentImage(image, size, 'trivial', seed)));
    expect(new Set(level.map((x) => Buffer.from(x).toString('base64'))).size).toBe(6);
    expect(level.every((x) => x.length === image.length)).toBe(true);
    const rand = await Promise.all([1, 1, 2, 3].map((seed) => augmentImage(image, size, 'rand-n2-m9', seed)));
    expect(Buffer.from(rand[0]!).equals(Buffer.from(rand[1]!))).toBe(true);
    expect(new Set(rand.map((x) => Buffer.from(x).toString('base64'))).size).toBe(3);
    // The same seed draws the same crop, flip and operations; only the magnitude differs, and so does the image.
    for (const seed of [1, 2, 3]) {
      const [weak, strong] = await Promise.all(['rand-n14-m0', 'rand-n14-m30'].map((l) => augmentImage(image, size, l as 'rand-n14-m0', seed)));
      expect(Buffer.from(weak!).equals(Buffer.from(strong!)), `seed ${seed}`).toBe(false);
    }
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
    const outs: Record<string, string> = {};
    for (const level of ['trivial', 'rand-m12', 'none']) {
      const out = join(tempDir(), level);
      outs[level] = out;
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
    // rand-m12 is kept in its one spelling, in the report and in the run's config.
    expect(html['rand-m12']).toContain('as --augment rand-n2-m12 shows them');
    expect(JSON.parse(readFileSync(join(outs['rand-m12']!, 'config.json'), 'utf8')).augment).toBe('rand-n2-m12');
    const bad = await runTl(['finetune', data, '--augment', 'rand-m40', '-q'], { TL_HOME: tempDir() });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/--augment.*rand-nN-mM/);
  }, 120_000);
});
