import { relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDataset, type Dataset } from '../../src/data/index.js';
import { decodeImage } from '../../src/data/decode.js';
import { runCli } from '../../src/cli/main.js';
import { makeHostileDataset } from '../helpers/hostile.js';
import { tempDir } from '../helpers/tmp.js';
import { join } from 'node:path';

const root = tempDir();
let expected: Awaited<ReturnType<typeof makeHostileDataset>>;
let dataset: Dataset;
const MAX_PIXELS = 100_000;

beforeAll(async () => {
  expected = await makeHostileDataset(root);
  dataset = await openDataset(root, { val: 0, test: 0, seed: 1, size: 16, resize: 'squash', maxPixels: MAX_PIXELS });
});

const px = (img: Uint8Array, size: number, x: number, y: number) => Array.from(img.subarray((y * size + x) * 3, (y * size + x) * 3 + 3));

describe('hostile dataset', () => {
  it('skips every bad file with the right reason, and nothing else', () => {
    const got = Object.fromEntries(dataset.skipped.map((s) => [relative(root, s.path), s.reason]));
    expect(Object.keys(got).sort()).toEqual(Object.keys(expected.skipped).sort());
    for (const [path, pattern] of Object.entries(expected.skipped)) expect(got[path]).toMatch(pattern);
  });

  it('keeps every good image, found by content (even without an extension), in natural class order', () => {
    expect(dataset.classes).toEqual(['apples', 'bananas']);
    const perClass = Object.fromEntries(dataset.classes.map((c, label) => [c, dataset.splits.train.filter((i) => i.label === label).length]));
    expect(perClass).toEqual(expected.goodPerClass);
    expect(dataset.ignored.hidden).toBeGreaterThanOrEqual(1);
    expect(dataset.ignored.nonImage).toBeGreaterThanOrEqual(1);
  });

  it('decodes awkward formats correctly', async () => {
    const opts = { size: 16, resize: 'squash' as const, maxPixels: MAX_PIXELS };
    const rotated = await decodeImage(join(root, 'apples', 'rotated.jpg'), opts);
    expect(px(rotated, 16, 14, 8)[0]).toBeGreaterThan(200); // red moved to the right
    expect(px(rotated, 16, 1, 8)[2]).toBeGreaterThan(200); // blue on the left
    const rgba = await decodeImage(join(root, 'apples', 'rgba.png'), opts);
    expect(px(rgba, 16, 8, 2)).toEqual([0, 0, 255]);
    expect(px(rgba, 16, 8, 13)).toEqual([255, 255, 255]); // transparent -> white
    const sixteen = await decodeImage(join(root, 'apples', 'sixteen.png'), opts);
    expect(px(sixteen, 16, 5, 5).every((v) => Math.abs(v - 128) <= 1)).toBe(true);
    const gray = await decodeImage(join(root, 'apples', 'gray.png'), opts);
    const g = px(gray, 16, 3, 3);
    expect(new Set(g).size).toBe(1);
    const cmyk = await decodeImage(join(root, 'apples', 'cmyk.jpg'), opts);
    const c = px(cmyk, 16, 8, 8);
    expect(c[0]).toBeGreaterThan(150);
    expect(c[1]).toBeLessThan(90);
    const gif = await decodeImage(join(root, 'apples', 'nested', 'animated.gif'), opts);
    expect(px(gif, 16, 4, 4)).toEqual([0, 255, 0]); // first frame
  });

  it('still yields training batches of the good images', async () => {
    let n = 0;
    for await (const batch of dataset.source.batches(dataset.splits.train, { batchSize: 4, shuffleSeed: 3, augment: 'standard', augmentSeed: 9 })) {
      expect(batch.pixels.length).toBe(batch.items.length * 16 * 16 * 3);
      n += batch.items.length;
    }
    expect(n).toBe(dataset.splits.train.length);
  });

  it('tl data --json lists each skipped file with its reason', async () => {
    const r = await runCli(['data', root, '--json', '--max-pixels', String(MAX_PIXELS), '--size', '16']);
    expect(r.exitCode).toBe(0);
    const summary = JSON.parse(r.stdout) as { skipped: { path: string; reason: string }[] };
    expect(summary.skipped.map((s) => relative(root, s.path)).sort()).toEqual(Object.keys(expected.skipped).sort());
  });
});

describe('datasets that cannot be used', () => {
  it('no images, one class, and an empty class are clear errors', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises');
    const sharp = (await import('sharp')).default;
    const empty = tempDir();
    await mkdir(join(empty, 'a'));
    await mkdir(join(empty, 'b'));
    let r = await runCli(['data', empty]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/No images found/);
    const one = tempDir();
    await mkdir(join(one, 'only'));
    await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).png().toFile(join(one, 'only', 'x.png'));
    r = await runCli(['data', one]);
    expect(r.stderr).toMatch(/Only one class \('only'\)/);
    await mkdir(join(one, 'hollow'));
    await writeFile(join(one, 'hollow', 'readme.txt'), 'x');
    r = await runCli(['data', one]);
    expect(r.stderr).toMatch(/'hollow'.*no usable images/);
    r = await runCli(['data', join(one, 'missing')]);
    expect(r.stderr).toMatch(/does not exist/);
  });
});
