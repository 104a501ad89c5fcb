// tl data --duplicates: near-duplicates (a picture resized, re-encoded or cropped), with their classes and splits,
// found by crop-aware correlation of thumbnails. On Fashion-MNIST's look-alike items it also lists some distinct
// images (BENCHMARKS.md measures how many): the list is a place to look.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { runTl } from '../helpers/cli.js';
import { prng } from '../../src/util/random.js';
import { tempDir } from '../helpers/tmp.js';

/** `perClass` distinct 64 px pictures per class: a few soft blobs of random colour at random places. */
async function blobDataset(root: string, classes: number, perClass: number): Promise<void> {
  const size = 64;
  for (let c = 0; c < classes; c++) {
    mkdirSync(join(root, `class${c}`));
    for (let i = 0; i < perClass; i++) {
      const rand = prng(1000 * c + i + 1);
      const blobs = Array.from({ length: 4 }, () => ({ x: rand() * size, y: rand() * size, r: 6 + rand() * 14, rgb: [rand() * 255, rand() * 255, rand() * 255] }));
      const pixels = Buffer.alloc(size * size * 3, 20);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          for (const b of blobs) {
            const w = Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.r * b.r));
            for (let k = 0; k < 3; k++) pixels[(y * size + x) * 3 + k] = Math.min(255, pixels[(y * size + x) * 3 + k]! + w * b.rgb[k]!);
          }
        }
      }
      await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(root, `class${c}`, `img${i}.png`));
    }
  }
}

const SAMPLE = new URL('../../datasets/fashion-mnist-sample/', import.meta.url).pathname;

describe('tl data --duplicates', () => {
  it('finds copies re-encoded and resized among the sample, with their classes, splits and kind, strongest first', async () => {
    const root = tempDir();
    for (const cls of ['bag', 'sneaker']) cpSync(join(SAMPLE, cls), join(root, cls), { recursive: true });
    const [a, b, c] = readdirSync(join(root, 'bag')).sort();
    // A copy under the same class, re-encoded; one resized to half under the other class; one cropped to 25 of 28 px.
    await sharp(join(root, 'bag', a!)).jpeg({ quality: 70 }).toFile(join(root, 'bag', 'copy-jpeg.jpg'));
    await sharp(join(root, 'bag', b!)).resize(14, 14).png().toFile(join(root, 'sneaker', 'copy-half.png'));
    await sharp(join(root, 'bag', c!)).extract({ left: 2, top: 1, width: 25, height: 25 }).png().toFile(join(root, 'bag', 'copy-crop.png'));
    const r = await runTl(['data', root, '--duplicates', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { nearDuplicates: { a: { rel: string; classes: string[]; split: string }; b: { rel: string; classes: string[]; split: string }; score: number; kind: string }[] };
    const pairs = out.nearDuplicates.map((p) => [p.a.rel, p.b.rel].sort().join(' = '));
    expect(pairs).toContain([`bag/${a}`, 'bag/copy-jpeg.jpg'].sort().join(' = '));
    expect(pairs).toContain([`bag/${b}`, 'sneaker/copy-half.png'].sort().join(' = '));
    expect(out.nearDuplicates.map((p) => p.score)).toEqual(out.nearDuplicates.map((p) => p.score).sort((x, y) => y - x));
    const half = out.nearDuplicates.find((p) => p.a.rel.includes('copy-half') || p.b.rel.includes('copy-half'))!;
    expect(half.score).toBeGreaterThanOrEqual(0.96);
    expect(half.kind).toBe(half.a.split !== half.b.split ? 'across splits' : 'across classes');
    const text = await runTl(['data', root, '--duplicates']);
    expect(text.stdout).toContain(`near-duplicates (one picture resized, re-encoded or cropped): ${out.nearDuplicates.length} pair`);
  }, 60_000);

  it('lists nothing among distinct images, then exactly the pairs of the copies added', async () => {
    const root = tempDir();
    await blobDataset(root, 2, 12);
    const none = JSON.parse((await runTl(['data', root, '--duplicates', '--json'])).stdout) as { nearDuplicates: unknown[] };
    expect(none.nearDuplicates).toEqual([]);
    await sharp(join(root, 'class0', 'img3.png')).jpeg({ quality: 80 }).toFile(join(root, 'class1', 'copy.jpg'));
    await sharp(join(root, 'class1', 'img5.png')).resize(32, 32).png().toFile(join(root, 'class1', 'small.png'));
    const some = JSON.parse((await runTl(['data', root, '--duplicates', '--json'])).stdout) as { nearDuplicates: { a: { rel: string; classes: string[] }; b: { rel: string; classes: string[] }; kind: string }[] };
    expect(some.nearDuplicates.map((p) => [p.a.rel, p.b.rel].sort())).toEqual(expect.arrayContaining([['class0/img3.png', 'class1/copy.jpg'], ['class1/img5.png', 'class1/small.png']]));
    expect(some.nearDuplicates).toHaveLength(2);
    const across = some.nearDuplicates.find((p) => p.a.rel.includes('copy') || p.b.rel.includes('copy'))!;
    expect([across.a.classes, across.b.classes].sort()).toEqual([['class0'], ['class1']]);
  }, 60_000);
});
