// Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019) as timm's Mixup applies them in its default batch mode:
// each batch is mixed with itself reversed (image i with image n-1-i) at one ratio drawn from Beta(alpha, alpha);
// CutMix pastes a box of the partner instead, and its ratio becomes the share of the image left uncovered. With both
// on, each batch takes one or the other with even odds. The targets mix the same way (`mixedTargets`).

/** `--mixup` and `--cutmix` alphas (0: off). */
export interface MixConfig {
  mixup: number;
  cutmix: number;
}

export interface MixedBatch {
  /** The mixed images, [n, size, size, 3] uint8 (mixup's blend rounded). */
  pixels: Uint8Array;
  /** The share of each image's own label in its target (the partner's is 1 - lam). */
  lam: number;
  kind: 'mixup' | 'cutmix';
}

export const mixing = (config: MixConfig) => config.mixup > 0 || config.cutmix > 0;

/** Mixes a batch of `n` `size`x`size` RGB images with itself reversed; `rand` draws every choice, `beta` the ratio. */
export function mixBatch(pixels: Uint8Array, n: number, size: number, config: MixConfig, rand: () => number, beta: (alpha: number) => number): MixedBatch {
  const kind = config.mixup > 0 && (config.cutmix === 0 || rand() < 0.5) ? 'mixup' : 'cutmix';
  let lam = beta(kind === 'mixup' ? config.mixup : config.cutmix);
  const image = size * size * 3;
  const out = new Uint8Array(pixels.length);
  if (kind === 'mixup') {
    for (let i = 0; i < n; i++) {
      const a = i * image;
      const b = (n - 1 - i) * image;
      for (let p = 0; p < image; p++) out[a + p] = Math.round(lam * pixels[a + p]! + (1 - lam) * pixels[b + p]!);
    }
    return { pixels: out, lam, kind };
  }
  // A box of (1 - lam) of the area centred anywhere, clipped at the edges; lam then is the share left uncovered.
  const cut = Math.sqrt(1 - lam);
  const [h, w] = [Math.floor(size * cut), Math.floor(size * cut)];
  const [cy, cx] = [Math.floor(rand() * size), Math.floor(rand() * size)];
  const [y0, y1] = [Math.max(0, cy - (h >> 1)), Math.min(size, cy + (h >> 1))];
  const [x0, x1] = [Math.max(0, cx - (w >> 1)), Math.min(size, cx + (w >> 1))];
  out.set(pixels);
  for (let i = 0; i < n; i++) {
    const a = i * image;
    const b = (n - 1 - i) * image;
    for (let y = y0; y < y1; y++) out.set(pixels.subarray(b + (y * size + x0) * 3, b + (y * size + x1) * 3), a + (y * size + x0) * 3);
  }
  lam = 1 - ((y1 - y0) * (x1 - x0)) / (size * size);
  return { pixels: out, lam, kind };
}

/**
 * The soft targets of a mixed batch, row-major [n, classes]: lam times image i's smoothed one-hot plus (1 - lam)
 * times image n-1-i's (Keras's smoothing: (1 - s) one-hot + s / classes); and each image's dominant label, which
 * the training accuracy counts against.
 */
export function mixedTargets(labels: Int32Array, lam: number, classes: number, smoothing: number): { targets: Float32Array; dominant: Int32Array } {
  const n = labels.length;
  const targets = new Float32Array(n * classes).fill(smoothing / classes);
  const on = 1 - smoothing;
  for (let i = 0; i < n; i++) {
    targets[i * classes + labels[i]!]! += lam * on;
    targets[i * classes + labels[n - 1 - i]!]! += (1 - lam) * on;
  }
  const dominant = Int32Array.from(labels, (l, i) => (lam >= 0.5 ? l : labels[n - 1 - i]!));
  return { targets, dominant };
}
