// Image formats recognised by their first bytes, not their file extension.

/** Formats tl decodes (through sharp/libvips). */
export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'avif' | 'heif';

/** The image format of a file's first bytes, or a description of what it is instead. */
export function sniffFormat(head: Uint8Array): { format: ImageFormat } | { format: null; what: string } {
  const b = (i: number) => head[i] ?? -1;
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to));
  if (head.length === 0) return { format: null, what: 'empty file' };
  if (b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return { format: 'jpeg' };
  if (b(0) === 0x89 && ascii(1, 4) === 'PNG') return { format: 'png' };
  if (ascii(0, 4) === 'GIF8') return { format: 'gif' };
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return { format: 'webp' };
  if ((b(0) === 0x49 && b(1) === 0x49 && b(2) === 0x2a && b(3) === 0) || (b(0) === 0x4d && b(1) === 0x4d && b(2) === 0 && b(3) === 0x2a)) return { format: 'tiff' };
  if (ascii(4, 8) === 'ftyp') {
    const brand = ascii(8, 12);
    if (brand === 'avif' || brand === 'avis') return { format: 'avif' };
    if (['heic', 'heix', 'mif1', 'msf1', 'hevc'].includes(brand)) return { format: 'heif' };
  }
  if (ascii(0, 2) === 'BM') return { format: null, what: 'BMP image (unsupported; convert to PNG)' };
  return { format: null, what: 'not an image (unrecognised content)' };
}

/** Extensions that suggest an image, used only to word messages. */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.gif', '.webp', '.tif', '.tiff', '.avif', '.heic', '.heif', '.bmp']);
