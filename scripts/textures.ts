// Builds a texture dataset (DATA/<texture>/<n>.png) from the photographs in Debian's python3-skimage: brick, grass
// and gravel (512x512 grayscale each), cut into non-overlapping tiles. Real photos far from what the nsfwjs models
// were trained on, for checking choices (freeze depth, backbone) on a second kind of data.
// Usage: node dist/scripts/textures.js --out DIR [--tile 64]; with --faces, skimage's lfw_subset instead (face / not_face)
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { debianFile } from './debian.js';

export const TEXTURES = ['brick', 'grass', 'gravel'] as const;

/** Writes every tile of each texture; returns the number of images written, or the reason the photos are missing. */
export async function writeTextures(out: string, tile = 64): Promise<number | string> {
  let written = 0;
  for (const name of TEXTURES) {
    const found = debianFile('python3-skimage', `/usr/lib/python3/dist-packages/skimage/data/${name}.png`);
    if (found.path === null) return found.reason;
    const image = sharp(found.path);
    const { width, height } = await image.metadata();
    await mkdir(join(out, name), { recursive: true });
    for (let y = 0; y + tile <= (height ?? 0); y += tile) {
      for (let x = 0; x + tile <= (width ?? 0); x += tile) {
        await sharp(found.path).extract({ left: x, top: y, width: tile, height: tile }).png().toFile(join(out, name, `${y / tile}-${x / tile}.png`));
        written++;
      }
    }
  }
  return written;
}

/**
 * Writes python3-skimage's `lfw_subset` (Labeled Faces in the Wild: 100 face crops, then 100 crops that are not faces,
 * 25x25 grayscale, float64 in [0, 1]) as DATA/face and DATA/not_face PNGs; returns the count or why it cannot.
 */
export async function writeLfwFaces(out: string): Promise<number | string> {
  const found = debianFile('python3-skimage', '/usr/lib/python3/dist-packages/skimage/data/lfw_subset.npy');
  if (found.path === null) return found.reason;
  const bytes = await readFile(found.path);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.toString('latin1', 10, 10 + headerLength);
  const shape = /'shape': \((\d+), (\d+), (\d+)\)/.exec(header);
  if (!/'descr': '<f8'/.test(header) || !shape) return `${found.path}: not the float64 [n, h, w] array expected`;
  const [n, h, w] = [Number(shape[1]), Number(shape[2]), Number(shape[3])];
  const body = bytes.subarray(10 + headerLength);
  for (const name of ['face', 'not_face']) await mkdir(join(out, name), { recursive: true });
  for (let i = 0; i < n; i++) {
    const pixels = Buffer.alloc(h * w);
    for (let p = 0; p < h * w; p++) pixels[p] = Math.round(255 * Math.min(1, Math.max(0, body.readDoubleLE((i * h * w + p) * 8))));
    await sharp(pixels, { raw: { width: w, height: h, channels: 1 } }).png().toFile(join(out, i < n / 2 ? 'face' : 'not_face', `${i}.png`));
  }
  return n;
}

/** The colour photographs in python3-skimage that `writePhotoTiles` cuts (one class each). */
export const PHOTOS = ['astronaut', 'coffee', 'chelsea', 'rocket', 'motorcycle_left'] as const;

/**
 * Writes `perClass` tiles of `tile` px from each of PHOTOS (a class per photograph), on a grid across the picture: a
 * small, real-photo task where every tile is a local patch of one scene (harder than whole textures).
 */
export async function writePhotoTiles(out: string, tile = 32, perClass = 40): Promise<number | string> {
  let written = 0;
  for (const name of PHOTOS) {
    const file = name === 'rocket' ? `${name}.jpg` : `${name}.png`;
    const found = debianFile('python3-skimage', `/usr/lib/python3/dist-packages/skimage/data/${file}`);
    if (found.path === null) return found.reason;
    const { width = 0, height = 0 } = await sharp(found.path).metadata();
    const cells: [number, number][] = [];
    for (let y = 0; y + tile <= height; y += tile) for (let x = 0; x + tile <= width; x += tile) cells.push([x, y]);
    // Evenly spread over the grid, the same cells every time.
    const step = Math.max(1, Math.floor(cells.length / perClass));
    await mkdir(join(out, name), { recursive: true });
    for (let k = 0; k < perClass && k * step < cells.length; k++) {
      const [x, y] = cells[k * step]!;
      await sharp(found.path).extract({ left: x, top: y, width: tile, height: tile }).removeAlpha().png().toFile(join(out, name, `${y}-${x}.png`));
      written++;
    }
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, tile: { type: 'string', default: '64' }, faces: { type: 'boolean', default: false }, photos: { type: 'boolean', default: false } } });
  if (!values.out) throw new Error('--out DIR is required');
  const r = values.faces ? await writeLfwFaces(values.out) : values.photos ? await writePhotoTiles(values.out) : await writeTextures(values.out, Number(values.tile));
  if (typeof r === 'string') throw new Error(r);
  console.log(`wrote ${r} images to ${values.out}`);
}
