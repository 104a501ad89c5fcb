// --augment-views: K augmented views of each training image, drawn once and cached; each epoch one view per image.
import { describe, expect, it } from 'vitest';
import { loadBackend } from '../../src/backend/index.js';
import { ImageSource, scanDataset } from '../../src/data/index.js';
import { allViews, epochViews } from '../../src/data/views.js';
import { finetune } from '../../src/train/finetune.js';
import { finetuneOptions } from '../helpers/options.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();

/** Each item's decoded (and, for a view, augmented) pixels, in order. */
async function pixelsOf(source: ImageSource, items: Parameters<ImageSource['batches']>[0]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const batch of source.batches(items, { batchSize: 4 })) for (let i = 0; i < batch.items.length; i++) out.push(batch.pixels.slice(i * source.imageBytes, (i + 1) * source.imageBytes));
  return out;
}

describe('--augment-views', () => {
  it("a view's pixels are the same every time it is drawn, and differ between views and between seeds", async () => {
    await makeColourDataset(data, 2, 4, 32);
    const { items } = await scanDataset(data);
    const source = new ImageSource(items, { size: 32 });
    const views = allViews(items.slice(0, 2), 'standard', 3, 1);
    expect(views.map((v) => [v.rel, v.view!.index])).toEqual([[items[0]!.rel, 0], [items[0]!.rel, 1], [items[0]!.rel, 2], [items[1]!.rel, 0], [items[1]!.rel, 1], [items[1]!.rel, 2]]);
    const first = await pixelsOf(source, views);
    expect(await pixelsOf(source, views)).toEqual(first);
    for (let a = 0; a < 3; a++) for (let b = a + 1; b < 3; b++) expect(first[a], `views ${a} and ${b}`).not.toEqual(first[b]);
    const plain = await pixelsOf(source, items.slice(0, 1));
    expect(first[0]).not.toEqual(plain[0]);
    const otherSeed = await pixelsOf(source, allViews(items.slice(0, 1), 'standard', 3, 2));
    expect(otherSeed[0]).not.toEqual(first[0]);
    // Each epoch shows one view per image, drawn anew: over epochs every view comes up.
    const shown = Array.from({ length: 12 }, (_, e) => epochViews(items.slice(0, 1), 'standard', 3, 1, e)[0]!.view!.index);
    expect(new Set(shown)).toEqual(new Set([0, 1, 2]));
    expect(epochViews(items, 'standard', 3, 1, 5)).toEqual(epochViews(items, 'standard', 3, 1, 5));
  });

  it('the frozen part runs once over every view, then the epochs train from the cache, on both engines', async () => {
    const { tf, info } = await loadBackend({ choice: 'wasm' });
    const root = tempDir();
    await makeColourDataset(root, 3, 10, 32);
    const common = { store: tempDir(), freeze: 100, epochs: 3, batchSize: 8, lr: 1e-3, calibrate: 'none' as const, inputSize: 48, augment: 'light' as const, augmentViews: 4, val: 0.2, test: 0.2, seed: 2 };
    const onnx = await finetune(tf, info, finetuneOptions(root, tempDir(), { ...common, engine: 'onnx' }));
    const tfjs = await finetune(tf, info, finetuneOptions(root, tempDir(), { ...common, engine: 'tfjs' }));
    // 18 training images x 4 views, and 6 validation images.
    expect(onnx.frozenPass!.images).toBe(18 * 4 + 6);
    expect(onnx.cache.enabled).toBe(true);
    // Every epoch reads its views from the cache: 3 epochs x (18 training + 6 validation) hits; the misses are the 78
    // outputs the pass computed and the 6 test images.
    expect(onnx.cache.hitRate).toBeCloseTo(72 / (72 + 78 + 6), 10);
    expect(tfjs.cache.hitRate).toBeCloseTo(72 / (72 + 78 + 6), 10);
    onnx.history.forEach((h, i) => expect(h.loss, `epoch ${h.epoch}`).toBeCloseTo(tfjs.history[i]!.loss, 3));
    const anew = await finetune(tf, info, finetuneOptions(root, tempDir(), { ...common, augmentViews: 0, engine: 'onnx' }));
    expect(anew.cache.enabled).toBe(false);
    expect(anew.frozenPass).toBeNull();
    await expect(finetune(tf, info, finetuneOptions(root, tempDir(), { ...common, augment: 'none' }))).rejects.toThrow(/draws views with --augment/);
    await expect(finetune(tf, info, finetuneOptions(root, tempDir(), { ...common, mixup: 0.8 }))).rejects.toThrow(/caches the outputs of each view/);
  }, 180_000);
});
