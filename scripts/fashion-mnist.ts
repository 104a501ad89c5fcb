// Builds a folder dataset (DATA/<class>/<n>.png) from Debian's dataset-fashion-mnist idx files.
// Usage: node dist/scripts/fashion-mnist.js [--per-class N] [--classes 0,1,7,8,9] [--split train|t10k] [--src DIR] --out DIR
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

/** Fashion-MNIST label names, index = label. */
export const FASHION_CLASSES = ['tshirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot'] as const;

function readIdx(buf: Buffer): { dims: number[]; data: Uint8Array } {
  const ndim = buf[3] as number;
  const dims = Array.from({ length: ndim }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + 4 + 4 * ndim, dims.reduce((a, b) => a * b, 1)) };
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
  const perClass = Number(values['per-class']);
  const wanted = values.classes.split(',').map(Number);
  const images = readIdx(gunzipSync(await readFile(join(values.src, `${values.split}-images-idx3-ubyte.gz`))));
  const labels = readIdx(gunzipSync(await readFile(join(values.src, `${values.split}-labels-idx1-ubyte.gz`))));
  const [, rows, cols] = images.dims as [number, number, number];
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.data.length; i++) {
    const label = labels.data[i] as number;
    if (!wanted.includes(label)) continue;
    const n = counts.get(label) ?? 0;
    if (n >= perClass) continue;
    counts.set(label, n + 1);
    const dir = join(values.out, FASHION_CLASSES[label] as string);
    await mkdir(dir, { recursive: true });
    const pixels = images.data.subarray(i * rows * cols, (i + 1) * rows * cols);
    // Fashion-MNIST stores garments light on dark; keep it as published.
    await sharp(Buffer.from(pixels), { raw: { width: cols, height: rows, channels: 1 } }).png({ compressionLevel: 9 }).toFile(join(dir, `${values.split}-${String(i).padStart(5, '0')}.png`));
    if ([...counts.values()].reduce((a, b) => a + b, 0) >= perClass * wanted.length) break;
  }
  process.stdout.write(`wrote ${[...counts.values()].reduce((a, b) => a + b, 0)} images in ${counts.size} classes to ${values.out}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
