// Builds a folder dataset (DATA/<class>/<n>.png) from Debian's dataset-fashion-mnist idx files.
// Usage: node dist/scripts/fashion-mnist.js [--per-class N] [--classes 0,1,7,8,9] [--split train|t10k] [--src DIR] --out DIR
import { mkdir, readFile } from 'node:fs/promises';
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
