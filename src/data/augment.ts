// Seeded training-time augmentation on decoded uint8 RGB images (sharp does the pixel work): light (crop and flip),
// standard (also rotation, brightness and contrast), trivial (crop and flip, then TrivialAugment and random erasing),
// rand-nN-mM (crop and flip, then RandAugment's N operations at magnitude M, and random erasing).
import sharp from 'sharp';
import { prng } from '../util/random.js';
import { randAugment, trivialAugment } from './trivial-augment.js';
import { randParams, type AugmentLevel } from './modes.js';

export { AUGMENT_LEVELS, type AugmentLevel } from './modes.js';

interface Params {
  flip: boolean;
  crop: { left: number; top: number; width: number; height: number };
  angle: number;
  contrast: number;
  brightness: number;
}

function draw(level: Exclude<AugmentLevel, 'none'>, size: number, rand: () => number): Params {
  const flip = rand() < 0.5;
  const [minScale, maxRatio] = level === 'light' ? [0.8, 1.1] : [0.5, 4 / 3];
  const area = size * size * (minScale + (1 - minScale) * rand());
  const ratio = Math.exp(Math.log(1 / maxRatio) + (Math.log(maxRatio) - Math.log(1 / maxRatio)) * rand());
  const width = Math.max(8, Math.min(size, Math.round(Math.sqrt(area * ratio))));
  const height = Math.max(8, Math.min(size, Math.round(Math.sqrt(area / ratio))));
  const crop = { left: Math.floor(rand() * (size - width + 1)), top: Math.floor(rand() * (size - height + 1)), width, height };
  // trivial and rand: standard's crop and flip; TrivialAugment or RandAugment then does the rest (trivial-augment.ts).
  if (level !== 'standard') return { flip, crop, angle: 0, contrast: 1, brightness: 0 };
  return { flip, crop, angle: (rand() * 2 - 1) * 10, contrast: 1 + (rand() * 2 - 1) * 0.2, brightness: (rand() * 2 - 1) * 0.2 * 255 };
}

/** Returns an augmented copy of a `size`x`size` RGB image; the same seed gives the same result. */
export async function augmentImage(pixels: Uint8Array, size: number, level: AugmentLevel, seed: number): Promise<Uint8Array> {
  if (level === 'none') return pixels;
  const rand = prng(seed);
  const p = draw(level, size, rand);
  let img = sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).extract(p.crop).resize(size, size, { fit: 'fill' });
  if (p.flip) img = img.flop();
  if (p.contrast !== 1 || p.brightness !== 0) img = img.linear(p.contrast, p.brightness + 128 * (1 - p.contrast));
  let out = await img.raw().toBuffer();
  if (p.angle !== 0) {
    // Rotating grows the canvas; cropping the centre back keeps the scale.
    const rotated = await sharp(out, { raw: { width: size, height: size, channels: 3 } }).rotate(p.angle, { background: { r: 0, g: 0, b: 0 } }).raw().toBuffer({ resolveWithObject: true });
    const left = Math.floor((rotated.info.width - size) / 2);
    const top = Math.floor((rotated.info.height - size) / 2);
    out = await sharp(rotated.data, { raw: { width: rotated.info.width, height: rotated.info.height, channels: 3 } }).extract({ left, top, width: size, height: size }).raw().toBuffer();
  }
  const pixelsOut = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  const randAug = randParams(level);
  if (randAug) return randAugment(pixelsOut, size, rand, randAug.ops, randAug.magnitude);
  return level === 'trivial' ? trivialAugment(pixelsOut, size, rand) : pixelsOut;
}

/**
 * A contact sheet (fastai's show_batch): the first `count` of `images` (size x size RGB) each augmented once as
 * `level` draws it (seeded), in a grid of `columns`, as a JPEG.
 */
export async function augmentSheet(images: Uint8Array[], size: number, level: AugmentLevel, seed: number, columns = 4): Promise<Buffer> {
  const tile = Math.min(size, 128);
  const tiles = await Promise.all(images.map(async (pixels, i) => {
    const out = await augmentImage(pixels, size, level, (seed * 7919 + i) >>> 0);
    return sharp(out, { raw: { width: size, height: size, channels: 3 } }).resize(tile, tile).raw().toBuffer();
  }));
  const rows = Math.ceil(tiles.length / columns);
  const gap = 4;
  return sharp({ create: { width: columns * (tile + gap) - gap, height: rows * (tile + gap) - gap, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(tiles.map((input, i) => ({ input, raw: { width: tile, height: tile, channels: 3 }, left: (i % columns) * (tile + gap), top: Math.floor(i / columns) * (tile + gap) })))
    .jpeg({ quality: 85 })
    .toBuffer();
}
