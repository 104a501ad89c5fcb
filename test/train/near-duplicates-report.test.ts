// The fine-tune report's possible near-duplicates across splits: a held-out image that is a training image
// re-encoded is listed (report.json, .md, .html with both thumbnails) and warned about; distinct pictures are not.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadBackend } from '../../src/backend/index.js';
import { finetune } from '../../src/train/finetune.js';
import { prng } from '../../src/util/random.js';
import { finetuneOptions } from '../helpers/options.js';
import { tempDir } from '../helpers/tmp.js';

/** A 64 px picture of a few soft blobs of random colour, seeded. */
async function blobs(path: string, seed: number): Promise<void> {
  const size = 64;
  const rand = prng(seed);
  const list = Array.from({ length: 4 }, () => ({ x: rand() * size, y: rand() * size, r: 6 + rand() * 14, rgb: [rand() * 255, rand() * 255, rand() * 255] }));
  const pixels = Buffer.alloc(size * size * 3, 20);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (const b of list) {
    const w = Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.r * b.r));
    for (let k = 0; k < 3; k++) pixels[(y * size + x) * 3 + k] = Math.min(255, pixels[(y * size + x) * 3 + k]! + w * b.rgb[k]!);
  }
  await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(path);
}

describe('near-duplicates across splits in the fine-tune report', () => {
  it('lists a test image that is a training image re-encoded, and nothing among distinct pictures', async () => {
    const { tf, info } = await loadBackend({ choice: 'wasm' });
    const data = tempDir();
    const rows = ['path,label,split'];
    for (const cls of ['a', 'b']) {
      mkdirSync(join(data, cls));
      for (let i = 0; i < 10; i++) {
        await blobs(join(data, cls, `${i}.png`), (cls === 'a' ? 100 : 200) + i);
        rows.push(`${cls}/${i}.png,${cls},${i < 2 ? 'test' : i < 4 ? 'val' : 'train'}`);
      }
    }
    const labels = join(tempDir(), 'labels.csv');
    writeFileSync(labels, `${rows.join('\n')}\n`);
    const common = { labels, store: tempDir(), freeze: 'all' as const, epochs: 1, batchSize: 8, calibrate: 'none' as const, seed: 1 };
    const clean = await finetune(tf, info, finetuneOptions(data, tempDir(), common));
    expect(clean.nearDuplicates).toEqual([]);
    // The first test image of class b becomes a JPEG copy of a training image of class a.
    await sharp(join(data, 'a', '7.png')).jpeg({ quality: 75 }).toFile(join(data, 'b', 'copy.jpg'));
    writeFileSync(labels, `${[...rows.filter((r) => !r.startsWith('b/0.png')), 'b/copy.jpg,b,test'].join('\n')}\n`);
    const leaked = await finetune(tf, info, finetuneOptions(data, tempDir(), common));
    expect(leaked.nearDuplicates).toEqual([{ train: join(data, 'a', '7.png'), heldOut: join(data, 'b', 'copy.jpg'), split: 'test', score: expect.any(Number) }]);
    expect(leaked.warnings.some((w) => w.startsWith('1 validation or test image looks like a training image'))).toBe(true);
    expect(readFileSync(join(leaked.outDir, 'report.md'), 'utf8')).toContain(`| ${join(data, 'b', 'copy.jpg')} | test | ${join(data, 'a', '7.png')} |`);
    expect((readFileSync(join(leaked.outDir, 'report.html'), 'utf8').match(/<figure class="pair"><img/g) ?? []).length).toBe(1);
  }, 120_000);
});
