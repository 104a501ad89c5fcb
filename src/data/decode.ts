// Decodes any image sharp reads into uint8 RGB at the model's input size.
import sharp from 'sharp';

/** How an image is fitted to the square input. */
import type { ResizeMode } from './modes.js';

export type { ResizeMode } from './modes.js';
export const RESIZE_MODES: readonly ResizeMode[] = ['center-crop', 'squash', 'pad'];

export interface DecodeOptions {
  size: number;
  resize: ResizeMode;
  /** Refuse images with more pixels than this (decompression bombs). */
  maxPixels: number;
}

export { DEFAULT_MAX_PIXELS } from './modes.js';

const FIT: Record<ResizeMode, 'cover' | 'fill' | 'contain'> = { 'center-crop': 'cover', squash: 'fill', pad: 'contain' };

/**
 * Decodes `input` to `size`x`size`x3 uint8: EXIF orientation applied, alpha flattened on white, grayscale/CMYK
 * converted to sRGB, 16-bit scaled to 8-bit, first frame of animations.
 */
export async function decodeImage(input: string | Buffer, options: DecodeOptions): Promise<Uint8Array> {
  const { data, info } = await sharp(input, { limitInputPixels: options.maxPixels, failOn: 'error', animated: false, pages: 1 })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace('srgb')
    .resize(options.size, options.size, { fit: FIT[options.resize], position: 'centre', background: { r: 0, g: 0, b: 0 }, kernel: 'lanczos3' })
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels === 3) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // A single band can survive colour conversion (e.g. some grayscale PNGs): replicate it.
  const out = new Uint8Array(options.size * options.size * 3);
  const c = info.channels;
  for (let p = 0; p < options.size * options.size; p++) {
    const v = data[p * c] as number;
    out[p * 3] = v;
    out[p * 3 + 1] = c >= 3 ? (data[p * c + 1] as number) : v;
    out[p * 3 + 2] = c >= 3 ? (data[p * c + 2] as number) : v;
  }
  return out;
}

/** Width, height and pixel count from the header alone (no full decode). */
export async function imageSize(path: string): Promise<{ width: number; height: number }> {
  const meta = await sharp(path, { limitInputPixels: false }).metadata();
  const swap = (meta.orientation ?? 1) >= 5;
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  return swap ? { width: height, height: width } : { width, height };
}

/** Human wording of a sharp/libvips failure. */
export function decodeFailureReason(err: unknown): string {
  const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
  if (/pixel limit/i.test(msg)) return `too many pixels (over the limit; ${msg})`;
  if (/premature end|truncated|unexpected end|not enough data|Read error/i.test(msg)) return `truncated or corrupt image (${msg})`;
  return `cannot decode (${msg})`;
}
