// TrivialAugment (Müller & Hutter, 2021; torchvision's TrivialAugmentWide): each image gets one operation drawn
// uniformly from the list below, at a strength drawn uniformly from 31 levels. RandAugment (Cubuk et al., 2020;
// torchvision's RandAugment): N operations drawn uniformly from the same list, one after the other, all at the fixed
// strength M of the 31 levels, over narrower ranges. Both are followed (as timm's recipes do) by random erasing of one
// rectangle with probability ERASE. Colour operations work on the uint8 pixels here, as PIL's do; geometric ones go
// through sharp. Seeded by the caller's random source.
import sharp from 'sharp';

export const TRIVIAL_OPS = ['identity', 'shearX', 'shearY', 'translateX', 'translateY', 'rotate', 'brightness', 'color', 'contrast', 'sharpness', 'posterize', 'solarize', 'autoContrast', 'equalize'] as const;
export type TrivialOp = (typeof TRIVIAL_OPS)[number];

/** Strength levels, as torchvision's num_magnitude_bins. */
const BINS = 31;
/** Probability of erasing a rectangle (timm's --reprob 0.25), its area 2-33% of the image, aspect 0.3-3.3. */
export const ERASE = 0.25;

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** The two search spaces: torchvision's TrivialAugmentWide ranges, and its RandAugment ranges. */
export type AugmentSpace = 'wide' | 'rand';
const RANGES: Record<AugmentSpace, { shear: number; enhance: number; rotate: number; posterizeBits: number; translate: (size: number) => number }> = {
  // Translation in pixels: 32 at 224 px (scaled to the input size) for TrivialAugmentWide, 150/331 of the size for RandAugment.
  wide: { shear: 0.99, enhance: 0.99, rotate: 135, posterizeBits: 6, translate: (size) => 32 * (size / 224) },
  rand: { shear: 0.3, enhance: 0.9, rotate: 30, posterizeBits: 4, translate: (size) => (150 / 331) * size },
};

/** The signed magnitude of `op` at level `m` of BINS - 1 in `space`'s ranges. */
export function magnitude(op: TrivialOp, m: number, size: number, sign: number, space: AugmentSpace = 'wide'): number {
  const t = m / (BINS - 1);
  const r = RANGES[space];
  switch (op) {
    case 'shearX':
    case 'shearY':
      return sign * r.shear * t;
    case 'brightness':
    case 'color':
    case 'contrast':
    case 'sharpness':
      return sign * r.enhance * t;
    case 'translateX':
    case 'translateY':
      return sign * Math.round(r.translate(size) * t);
    case 'rotate':
      return sign * r.rotate * t;
    case 'posterize':
      return 8 - Math.round(r.posterizeBits * t);
    case 'solarize':
      return 255 * (1 - t);
    default:
      return 0;
  }
}

/** Blends `img` with `other` (PIL's ImageEnhance): factor 0 gives `other`, 1 gives `img`. */
function blend(img: Uint8Array, other: ArrayLike<number>, factor: number): Uint8Array {
  return Uint8Array.from(img, (v, i) => clamp(other[i]! + (v - other[i]!) * factor));
}

const gray = (img: Uint8Array, p: number) => 0.299 * img[p * 3]! + 0.587 * img[p * 3 + 1]! + 0.114 * img[p * 3 + 2]!;

/** The colour operations, on `size`x`size` RGB uint8 pixels. */
export function colourOp(op: TrivialOp, img: Uint8Array, size: number, v: number): Uint8Array {
  const n = size * size;
  switch (op) {
    case 'brightness':
      return blend(img, new Uint8Array(img.length), 1 + v);
    case 'color': {
      const g = new Float32Array(img.length);
      for (let p = 0; p < n; p++) g.fill(gray(img, p), p * 3, p * 3 + 3);
      return blend(img, g, 1 + v);
    }
    case 'contrast': {
      let mean = 0;
      for (let p = 0; p < n; p++) mean += gray(img, p);
      return blend(img, new Float32Array(img.length).fill(Math.round(mean / n)), 1 + v);
    }
    case 'sharpness': {
      // PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 inside, the border kept.
      const smooth = Float32Array.from(img);
      for (let y = 1; y < size - 1; y++) {
        for (let x = 1; x < size - 1; x++) {
          for (let c = 0; c < 3; c++) {
            let s = 4 * img[(y * size + x) * 3 + c]!;
            for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s += img[((y + dy) * size + x + dx) * 3 + c]!;
            smooth[(y * size + x) * 3 + c] = s / 13;
          }
        }
      }
      return blend(img, smooth, 1 + v);
    }
    case 'posterize': {
      const mask = (0xff << (8 - v)) & 0xff;
      return Uint8Array.from(img, (x) => x & mask);
    }
    case 'solarize':
      return Uint8Array.from(img, (x) => (x >= v ? 255 - x : x));
    case 'autoContrast': {
      const out = new Uint8Array(img.length);
      for (let c = 0; c < 3; c++) {
        let lo = 255;
        let hi = 0;
        for (let p = 0; p < n; p++) {
          const x = img[p * 3 + c]!;
          if (x < lo) lo = x;
          if (x > hi) hi = x;
        }
        for (let p = 0; p < n; p++) out[p * 3 + c] = hi > lo ? clamp(((img[p * 3 + c]! - lo) * 255) / (hi - lo)) : img[p * 3 + c]!;
      }
      return out;
    }
    case 'equalize': {
      // Per channel, PIL's ImageOps.equalize: the histogram's cumulative counts spread over 0-255.
      const out = new Uint8Array(img.length);
      for (let c = 0; c < 3; c++) {
        const hist = new Array<number>(256).fill(0);
        for (let p = 0; p < n; p++) hist[img[p * 3 + c]!]! += 1;
        const nonzero = hist.filter((h) => h > 0);
        const step = Math.floor((n - nonzero[nonzero.length - 1]!) / 255);
        const lut = new Array<number>(256);
        let acc = Math.floor(step / 2);
        for (let i = 0; i < 256; i++) {
          lut[i] = step > 0 ? Math.min(255, Math.floor(acc / step)) : i;
          acc += hist[i]!;
        }
        for (let p = 0; p < n; p++) out[p * 3 + c] = lut[img[p * 3 + c]!]!;
      }
      return out;
    }
    default:
      return img;
  }
}

/** The geometric operations through sharp (black fill), the image's centre kept at its size. */
async function geometricOp(op: TrivialOp, img: Uint8Array, size: number, v: number): Promise<Uint8Array> {
  const raw = { raw: { width: size, height: size, channels: 3 as const } };
  const black = { r: 0, g: 0, b: 0 };
  let moved: { data: Buffer; info: { width: number; height: number } };
  if (op === 'rotate') moved = await sharp(img, raw).rotate(v, { background: black }).raw().toBuffer({ resolveWithObject: true });
  else if (op === 'shearX' || op === 'shearY') moved = await sharp(img, raw).affine(op === 'shearX' ? [1, v, 0, 1] : [1, 0, v, 1], { background: black }).raw().toBuffer({ resolveWithObject: true });
  else {
    // Translation: the image shifted by v pixels, the uncovered band black.
    const out = new Uint8Array(img.length);
    const [dx, dy] = op === 'translateX' ? [v, 0] : [0, v];
    for (let y = 0; y < size; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= size) continue;
      for (let x = 0; x < size; x++) {
        const sx = x - dx;
        if (sx >= 0 && sx < size) out.set(img.subarray((sy * size + sx) * 3, (sy * size + sx) * 3 + 3), (y * size + x) * 3);
      }
    }
    return out;
  }
  const left = Math.max(0, Math.floor((moved.info.width - size) / 2));
  const top = Math.max(0, Math.floor((moved.info.height - size) / 2));
  const cut = await sharp(moved.data, { raw: { width: moved.info.width, height: moved.info.height, channels: 3 } }).extract({ left, top, width: size, height: size }).raw().toBuffer();
  return new Uint8Array(cut.buffer, cut.byteOffset, cut.byteLength);
}

/** Random erasing: one rectangle of random area and aspect filled with random pixels (timm's per-pixel mode). */
export function erase(img: Uint8Array, size: number, rand: () => number): Uint8Array {
  for (let attempt = 0; attempt < 10; attempt++) {
    const area = size * size * (0.02 + (1 / 3 - 0.02) * rand());
    const aspect = Math.exp(Math.log(0.3) + (Math.log(1 / 0.3) - Math.log(0.3)) * rand());
    const h = Math.round(Math.sqrt(area * aspect));
    const w = Math.round(Math.sqrt(area / aspect));
    if (w >= size || h >= size || w < 1 || h < 1) continue;
    const top = Math.floor(rand() * (size - h));
    const left = Math.floor(rand() * (size - w));
    const out = Uint8Array.from(img);
    for (let y = top; y < top + h; y++) for (let x = left; x < left + w; x++) for (let c = 0; c < 3; c++) out[(y * size + x) * 3 + c] = Math.floor(rand() * 256);
    return out;
  }
  return img;
}

/** `op` at the signed magnitude `v`. */
export async function applyOp(op: TrivialOp, img: Uint8Array, size: number, v: number): Promise<Uint8Array> {
  const geometric = op === 'rotate' || op.startsWith('shear') || op.startsWith('translate');
  return op === 'identity' ? img : geometric ? geometricOp(op, img, size, v) : colourOp(op, img, size, v);
}

const drawOp = (rand: () => number) => TRIVIAL_OPS[Math.floor(rand() * TRIVIAL_OPS.length)]!;
const drawSign = (rand: () => number) => (rand() < 0.5 ? -1 : 1);

/** One TrivialAugment operation, then random erasing with probability ERASE; `rand` draws every choice. */
export async function trivialAugment(img: Uint8Array, size: number, rand: () => number): Promise<Uint8Array> {
  const op = drawOp(rand);
  const out = await applyOp(op, img, size, magnitude(op, Math.floor(rand() * BINS), size, drawSign(rand)));
  return rand() < ERASE ? erase(out, size, rand) : out;
}

/** RandAugment: `ops` operations in turn, each at magnitude level `m` of 0..30, then random erasing with probability ERASE. */
export async function randAugment(img: Uint8Array, size: number, rand: () => number, ops: number, m: number): Promise<Uint8Array> {
  let out = img;
  for (let i = 0; i < ops; i++) {
    const op = drawOp(rand);
    out = await applyOp(op, out, size, magnitude(op, m, size, drawSign(rand), 'rand'));
  }
  return rand() < ERASE ? erase(out, size, rand) : out;
}
