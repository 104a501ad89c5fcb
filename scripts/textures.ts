// Builds a texture dataset (DATA/<texture>/<n>.png) from the photographs in Debian's python3-skimage: brick, grass
// and gravel (512x512 grayscale each), cut into non-overlapping tiles. Real photos far from what the nsfwjs models
// were trained on, for checking choices (freeze depth, backbone) on a second kind of data.
// Usage: node dist/scripts/textures.js --out DIR [--tile 64]
import { mkdir } from 'node:fs/promises';
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, tile: { type: 'string', default: '64' } } });
  if (!values.out) throw new Error('--out DIR is required');
  const r = await writeTextures(values.out, Number(values.tile));
  if (typeof r === 'string') throw new Error(r);
  console.log(`wrote ${r} tiles to ${values.out}`);
}
