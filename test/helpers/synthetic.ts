// A small learnable image dataset: each class a colour with noise, written as PNGs.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadBackend, type BackendInfo, type Tf } from '../../src/backend/index.js';
import { randomArray } from './tensors.js';

const COLOURS: [number, number, number][] = [[220, 40, 40], [40, 200, 60], [50, 70, 230], [230, 220, 40]];

/** Writes `perClass` noisy `size`x`size` images for each of `classes` classes under `root`. */
export async function makeColourDataset(root: string, classes = 3, perClass = 12, size = 32): Promise<void> {
  for (let c = 0; c < classes; c++) {
    const dir = join(root, `class${c}`);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const noise = randomArray(size * size * 3, c * 1000 + i);
      const pixels = Buffer.alloc(size * size * 3);
      for (let p = 0; p < size * size * 3; p++) pixels[p] = Math.max(0, Math.min(255, (COLOURS[c]![p % 3] as number) + (noise[p] as number) * 60));
      await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(dir, `img${i}.png`));
    }
  }
}

/** The wasm backend, and a colour dataset written to `root` (what most training tests start from). */
export async function wasmWithColourData(root: string, classes = 3, perClass = 12, size = 32): Promise<{ tf: Tf; info: BackendInfo }> {
  const { tf, info } = await loadBackend({ choice: 'wasm' });
  await makeColourDataset(root, classes, perClass, size);
  return { tf, info };
}
