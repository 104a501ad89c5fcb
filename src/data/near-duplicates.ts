// Near-duplicates: images that are the same picture resized, re-encoded or cropped. Each image becomes grayscale
// thumbnails (32 px, or 16 px for images under 24 px, compared at the smaller of two images' sizes), zero-mean and
// unit-norm, of the whole image and of 18 crops (90% and 80% of it at 9 positions). Two images score the best
// correlation of one's whole thumbnail with the other's whole or cropped ones. A pair is reported when each is the
// other's best match, the score is at least MIN_SCORE, and it beats both images' next-best match by MARGIN: images
// of one class that merely look alike (Fashion-MNIST's plain trousers) have many matches about as good; a copy has one.
import sharp from 'sharp';
import { resampleBox } from '../util/resample.js';
import { DEFAULT_MAX_PIXELS } from './modes.js';
import { mapLimit, type ImageItem } from './scan.js';

/** The least correlation of a near-duplicate pair, and how far it must beat either image's next-best match. */
export const MIN_SCORE = 0.96;
export const MARGIN = 0.02;
/**
 * The least correlation a fine-tune warns at: stricter than the list `tl data --duplicates` gives for review. On
 * Fashion-MNIST with injected copies no distinct pair reached it (distinct plain bags of the sample score 0.97).
 */
export const WARN_SCORE = 0.98;

const CROPS = [0.9, 0.8];
const POSITIONS = [0, 0.5, 1];

interface Thumbs {
  /** The thumbnails' size this image is compared at (at most): 32, or 16 for a small image. */
  top: number;
  /** By size: the whole image's thumbnail first, then the crops'. */
  bySize: Map<number, Float32Array[]>;
}

/** `cw` x `ch` of `gray` (w x h) from (x0, y0), resampled bilinearly to `size` x `size`, zero-mean and unit-norm. */
function thumbnail(gray: Uint8Array, w: number, h: number, x0: number, y0: number, cw: number, ch: number, size: number): Float32Array {
  const out = new Float32Array(size * size);
  resampleBox(gray, w, h, 1, { x: x0, y: y0, width: cw, height: ch }, size, out);
  let mean = 0;
  for (let i = 0; i < out.length; i++) mean += out[i]!;
  mean /= out.length;
  let norm = 0;
  for (let i = 0; i < out.length; i++) {
    out[i] = out[i]! - mean;
    norm += out[i]! * out[i]!;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / norm;
  return out;
}

/** An image's thumbnails (null when it cannot be read: the decoder's own checks report that elsewhere). */
async function thumbsOf(path: string): Promise<Thumbs | null> {
  try {
    const { data, info } = await sharp(path, { limitInputPixels: DEFAULT_MAX_PIXELS }).rotate().flatten({ background: '#ffffff' }).greyscale().resize(64, 64, { fit: 'inside', withoutEnlargement: true }).raw().toBuffer({ resolveWithObject: true });
    const gray = new Uint8Array(data.buffer, data.byteOffset, info.width * info.height);
    const [w, h] = [info.width, info.height];
    const top = Math.min(w, h) >= 24 ? 32 : 16;
    const bySize = new Map<number, Float32Array[]>();
    for (const size of [16, 32].filter((s) => s <= top)) {
      const list = [thumbnail(gray, w, h, 0, 0, w, h, size)];
      for (const f of CROPS) for (const ax of POSITIONS) for (const ay of POSITIONS) list.push(thumbnail(gray, w, h, (w - w * f) * ax, (h - h * f) * ay, w * f, h * f, size));
      bySize.set(size, list);
    }
    return { top, bySize };
  } catch {
    return null;
  }
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** The best correlation of one image's whole thumbnail with the other's whole or cropped ones. */
function score(a: Thumbs, b: Thumbs): number {
  const size = Math.min(a.top, b.top);
  const [ta, tb] = [a.bySize.get(size)!, b.bySize.get(size)!];
  // A cheap look first: images whose whole thumbnails correlate below 0.6 are not compared crop by crop.
  let best = dot(ta[0]!, tb[0]!);
  if (best < 0.6) return best;
  for (let k = 1; k < ta.length; k++) best = Math.max(best, dot(ta[k]!, tb[0]!), dot(ta[0]!, tb[k]!));
  return best;
}

export interface NearDuplicate {
  /** Paths relative to the dataset root. */
  a: string;
  b: string;
  score: number;
}

/** The near-duplicate pairs among `items` (each compared with every other) scoring at least `minScore`, strongest first. */
export async function nearDuplicates(items: readonly ImageItem[], onProgress?: (done: number, total: number) => void, minScore = MIN_SCORE): Promise<NearDuplicate[]> {
  let done = 0;
  const thumbs = await mapLimit(items, 8, async (item) => {
    const t = await thumbsOf(item.path);
    onProgress?.(++done, items.length);
    return t;
  });
  const n = items.length;
  const best = new Int32Array(n).fill(-1);
  const first = new Float64Array(n).fill(-2);
  const second = new Float64Array(n).fill(-2);
  const note = (i: number, j: number, s: number) => {
    if (s > first[i]!) {
      second[i] = first[i]!;
      first[i] = s;
      best[i] = j;
    } else if (s > second[i]!) second[i] = s;
  };
  for (let i = 0; i < n; i++) {
    const ti = thumbs[i];
    if (!ti) continue;
    for (let j = i + 1; j < n; j++) {
      const tj = thumbs[j];
      if (!tj) continue;
      const s = score(ti, tj);
      note(i, j, s);
      note(j, i, s);
    }
  }
  const out: NearDuplicate[] = [];
  for (let i = 0; i < n; i++) {
    const j = best[i]!;
    if (j <= i || best[j] !== i || first[i]! < minScore) continue;
    if (first[i]! - Math.max(second[i]!, second[j]!) < MARGIN) continue;
    out.push({ a: items[i]!.rel, b: items[j]!.rel, score: first[i]! });
  }
  return out.sort((x, y) => y.score - x.score);
}
