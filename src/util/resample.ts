// Bilinear resampling of a box of an interleaved image, for the small resizes tl does itself on decoded pixels
// (test-time zoom, near-duplicate thumbnails); decoding and the training pipeline's resizes go through sharp.

/** A box of an image, in pixels (fractional edges allowed). */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The `box` of `src` (`w` x `h`, `channels` interleaved, starting at `offset`) resampled bilinearly to `size` x `size`
 * (pixel centres mapped onto the box, clamped at the image's edges), written to `out` from `outOffset`; a Uint8Array
 * `out` gets the values rounded.
 */
export function resampleBox(src: ArrayLike<number>, w: number, h: number, channels: number, box: Box, size: number, out: Float32Array | Uint8Array, offset = 0, outOffset = 0): void {
  const round = out instanceof Uint8Array;
  for (let y = 0; y < size; y++) {
    const fy = Math.min(h - 1, Math.max(0, box.y + ((y + 0.5) * box.height) / size - 0.5));
    const y0 = Math.floor(fy);
    const ay = fy - y0;
    const y1 = Math.min(h - 1, y0 + 1);
    for (let x = 0; x < size; x++) {
      const fx = Math.min(w - 1, Math.max(0, box.x + ((x + 0.5) * box.width) / size - 0.5));
      const x0 = Math.floor(fx);
      const ax = fx - x0;
      const x1 = Math.min(w - 1, x0 + 1);
      for (let c = 0; c < channels; c++) {
        const at = (yy: number, xx: number) => src[offset + (yy * w + xx) * channels + c]!;
        const v = (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x1)) + ay * ((1 - ax) * at(y1, x0) + ax * at(y1, x1));
        out[outOffset + (y * size + x) * channels + c] = round ? Math.round(v) : v;
      }
    }
  }
}
