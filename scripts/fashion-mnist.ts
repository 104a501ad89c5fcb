// Builds a folder dataset (DATA/<class>/<n>.png) from Debian's dataset-fashion-mnist idx files.
// Usage: node dist/scripts/fashion-mnist.js [--per-class N] [--classes 0,1,7,8,9] [--split train|t10k] [--src DIR] --out DIR
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';

/** Fashion-MNIST label names, index = label. */
export const FASHION_CLASSES = ['tshirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot'] as const;

function readIdx(buf: Buffer): { dims: number[]; data: Uint8Array } {
  const ndim = buf[3] as number;
  const dims = Array.from({ length: ndim }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + 4 + 4 * ndim, dims.reduce((a, b) => a * b, 1)) };
}

export interface FashionOptions {
  src: string;
  out: string;
  perClass: number;
  classes: number[];
  split: 'train' | 't10k';
}

/** Writes up to `perClass` images of each wanted class as PNG files; returns how many were written. */
export async function writeFashionMnist(options: FashionOptions): Promise<number> {
  const { src, out, perClass, classes: wanted, split } = options;
  const images = readIdx(gunzipSync(await readFile(join(src, `${split}-images-idx3-ubyte.gz`))));
  const labels = readIdx(gunzipSync(await readFile(join(src, `${split}-labels-idx1-ubyte.gz`))));
  const [, rows, cols] = images.dims as [number, number, number];
  const counts = new Map<number, number>();
  let written = 0;
  for (let i = 0; i < labels.data.length && written < perClass * wanted.length; i++) {
    const label = labels.data[i] as number;
    if (!wanted.includes(label)) continue;
    const n = counts.get(label) ?? 0;
    if (n >= perClass) continue;
    counts.set(label, n + 1);
    const dir = join(out, FASHION_CLASSES[label] as string);
    await mkdir(dir, { recursive: true });
    const pixels = images.data.subarray(i * rows * cols, (i + 1) * rows * cols);
    // Fashion-MNIST stores garments light on dark; keep it as published.
    await sharp(Buffer.from(pixels), { raw: { width: cols, height: rows, channels: 1 } }).png({ compressionLevel: 9 }).toFile(join(dir, `${split}-${String(i).padStart(5, '0')}.png`));
    written++;
  }
  return written;
}

export interface PairOptions {
  src: string;
  out: string;
  /** How many side-by-side images to write. */
  images: number;
  classes: number[];
  split: 'train' | 't10k';
  seed: number;
}

/**
 * A multi-label dataset: images of two Fashion-MNIST items side by side (56x28, each item drawn from `classes` with a
 * seeded generator, each item image used once), under DATA/images, and DATA/labels.csv listing both items' classes
 * (one class when both items are of it, separated by ';') and, in a `first` column, the left item's class alone.
 */
export async function writeFashionPairs(options: PairOptions): Promise<number> {
  const { src, out, images: count, classes: wanted, split } = options;
  const images = readIdx(gunzipSync(await readFile(join(src, `${split}-images-idx3-ubyte.gz`))));
  const labels = readIdx(gunzipSync(await readFile(join(src, `${split}-labels-idx1-ubyte.gz`))));
  const [, rows, cols] = images.dims as [number, number, number];
  const pool = Array.from(labels.data.keys()).filter((i) => wanted.includes(labels.data[i]!));
  let state = options.seed >>> 0 || 1;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  await mkdir(join(out, 'images'), { recursive: true });
  const lines = ['path,labels,first'];
  const n = Math.min(count, Math.floor(pool.length / 2));
  for (let k = 0; k < n; k++) {
    const [a, b] = [pool[2 * k]!, pool[2 * k + 1]!];
    const pixels = new Uint8Array(rows * cols * 2);
    for (let y = 0; y < rows; y++) {
      pixels.set(images.data.subarray(a * rows * cols + y * cols, a * rows * cols + (y + 1) * cols), y * 2 * cols);
      pixels.set(images.data.subarray(b * rows * cols + y * cols, b * rows * cols + (y + 1) * cols), y * 2 * cols + cols);
    }
    const name = `pair-${String(k).padStart(5, '0')}.png`;
    await sharp(Buffer.from(pixels), { raw: { width: cols * 2, height: rows, channels: 1 } }).png({ compressionLevel: 9 }).toFile(join(out, 'images', name));
    const both = [...new Set([FASHION_CLASSES[labels.data[a]!]!, FASHION_CLASSES[labels.data[b]!]!])];
    lines.push(`images/${name},${both.join(';')},${FASHION_CLASSES[labels.data[a]!]!}`);
  }
  await writeFile(join(out, 'labels.csv'), `${lines.join('\n')}\n`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'per-class': { type: 'string', default: '60' },
      classes: { type: 'string', default: '0,1,7,8,9' },
      split: { type: 'string', default: 'train' },
      src: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
      out: { type: 'string' },
    },
  });
  if (!values.out) throw new Error('--out DIR is required');
  const classes = values.classes.split(',').map(Number);
  const written = await writeFashionMnist({ src: values.src, out: values.out, perClass: Number(values['per-class']), classes, split: values.split === 't10k' ? 't10k' : 'train' });
  process.stdout.write(`wrote ${written} images in ${classes.length} classes to ${values.out}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
