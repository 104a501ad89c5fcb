// The dataset pipeline's modes as values (for option schemas) without loading the image decoder.

/** How an image becomes the input size. */
export const RESIZE_MODES = ['center-crop', 'squash', 'pad'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];
/** The resize mode when none is given. */
export const DEFAULT_RESIZE: ResizeMode = 'center-crop';
/** Images with more pixels than this are skipped unless --max-pixels says otherwise (decompression bombs). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Training augmentation levels. */
export const AUGMENT_LEVELS = ['none', 'light', 'standard', 'trivial'] as const;
export type AugmentLevel = (typeof AUGMENT_LEVELS)[number];
