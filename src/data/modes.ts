// The dataset pipeline's modes as values (for option schemas) without loading the image decoder.

/** How an image becomes the input size. */
export const RESIZE_MODES = ['center-crop', 'squash', 'pad'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];
/** The resize mode when none is given. */
export const DEFAULT_RESIZE: ResizeMode = 'center-crop';
/** Images with more pixels than this are skipped unless --max-pixels says otherwise (decompression bombs). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Training augmentation levels by name; `rand` stands for RandAugment at its defaults (`rand-n2-m9`). */
export const AUGMENT_LEVELS = ['none', 'light', 'standard', 'trivial', 'rand'] as const;
/** RandAugment with N operations per image at magnitude M (of 0..RAND_MAX_MAGNITUDE), as `rand-nN-mM`. */
export type RandLevel = `rand-n${number}-m${number}`;
export type AugmentLevel = Exclude<(typeof AUGMENT_LEVELS)[number], 'rand'> | RandLevel;
/** torchvision's RandAugment defaults: num_ops 2, magnitude 9 of 31 bins (0..30). */
export const RAND_DEFAULTS = { ops: 2, magnitude: 9 } as const;
export const RAND_MAX_MAGNITUDE = 30;
const RAND_MAX_OPS = 14;

/**
 * The level `text` names, in its one spelling: a named level, or `rand` with optional `-nN` (operations per image,
 * 1..14) and `-mM` (magnitude, 0..30) in either order; null when it names none.
 */
export function parseAugmentLevel(text: string): AugmentLevel | null {
  if (text !== 'rand' && (AUGMENT_LEVELS as readonly string[]).includes(text)) return text as AugmentLevel;
  const m = /^rand((?:-[nm]\d{1,2}){0,2})$/.exec(text);
  if (!m) return null;
  const parts = m[1]!.split('-').slice(1);
  const n = parts.filter((p) => p[0] === 'n').map((p) => Number(p.slice(1)));
  const mag = parts.filter((p) => p[0] === 'm').map((p) => Number(p.slice(1)));
  if (n.length > 1 || mag.length > 1) return null;
  const ops = n[0] ?? RAND_DEFAULTS.ops;
  const magnitude = mag[0] ?? RAND_DEFAULTS.magnitude;
  if (ops < 1 || ops > RAND_MAX_OPS || magnitude > RAND_MAX_MAGNITUDE) return null;
  return `rand-n${ops}-m${magnitude}`;
}

/** RandAugment's N and M of a level, or null for the other levels. */
export function randParams(level: AugmentLevel): { ops: number; magnitude: number } | null {
  const m = /^rand-n(\d+)-m(\d+)$/.exec(level);
  return m ? { ops: Number(m[1]), magnitude: Number(m[2]) } : null;
}
