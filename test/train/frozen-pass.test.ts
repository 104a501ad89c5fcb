// The frozen part runs once over the images the epochs read, before training: its outputs are cached, its session is
// closed before the trainer's opens, and an interruption during that pass loses nothing a resume cannot redo.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { applyTrainability, attachHead, cutModel } from '../../src/model/index.js';
import { openDataset } from '../../src/data/index.js';
import { onnxSessionFor } from '../../src/engine/index.js';
import { InterruptedError } from '../../src/errors.js';
import { OutputCache } from '../../src/frozen/cache.js';
import { FrozenPart } from '../../src/frozen/part.js';
import { finetune, type FinetuneOptions, type ProgressEvent } from '../../src/train/finetune.js';
import { loadPretrained } from '../../src/weights/index.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();

const options = (out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => finetuneOptions(data, out, { store, freeze: 'all', epochs: 3, batchSize: 8, lr: 0.01, calibrate: 'none', val: 0.25, test: 0.25, seed: 4, engine: 'onnx', ...extra });

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 16, 32));
});

describe('the frozen pass', () => {
  it('runs the frozen part once over the training and validation images, before any step; an interruption there is resumed to the same run', async () => {
    const events: ProgressEvent[] = [];
    const whole = await finetune(tf, info, options(join(tempDir(), 'run'), { onProgress: (e) => events.push(e) }));
    // 48 images: 24 train, 12 val (the test split runs through the frozen part after training, not in this pass).
    expect(whole.frozenPass?.images).toBe(36);
    const firstStep = events.findIndex((e) => e.phase === 'train');
    const lastFeatures = events.findLastIndex((e) => e.phase === 'frozen');
    expect(lastFeatures).toBeGreaterThanOrEqual(0);
    expect(lastFeatures).toBeLessThan(firstStep);
    expect(events[lastFeatures]).toMatchObject({ done: 36, total: 36 });

    // SIGINT after the first batch of the frozen pass: nothing trained, no checkpoint; --resume starts it over.
    const out = join(tempDir(), 'run');
    const interrupt: NonNullable<FinetuneOptions['interrupt']> = { stop: null };
    const stopped = finetune(tf, info, options(out, { interrupt, onProgress: (e) => (e.phase === 'frozen' && e.done >= 8 ? (interrupt.stop = 'SIGINT') : undefined) }));
    await expect(stopped).rejects.toThrow(InterruptedError);
    await expect(stopped).rejects.toThrow(/while computing the frozen part's outputs, before the train phase trained/);
    expect(existsSync(join(out, 'config.json'))).toBe(true);
    expect(existsSync(join(out, 'checkpoints', 'last.ckpt'))).toBe(false);
    const resumed = await finetune(tf, info, options(out, { resume: true }));
    expect(resumed.history.map((h) => [h.loss, h.val_loss])).toEqual(whole.history.map((h) => [h.loss, h.val_loss]));
    expect(resumed.metrics?.accuracy).toBe(whole.metrics?.accuracy);
  }, 120_000);

  it('closes the frozen part\'s session once the cache holds every image asked for, and opens it again on a miss', async () => {
    const pretrained = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, inputSize: 64, store });
    const full = attachHead(tf, pretrained.model, { classes: 3, dropout: 0, name: 'full' });
    const frozenNames = new Set(pretrained.model.layers.map((l) => l.name));
    applyTrainability(full, frozenNames, 'frozen');
    const cut = cutModel(tf, full, frozenNames);
    const dataset = await openDataset(data, { val: 0.25, test: 0.25, seed: 4, size: 64, resize: 'squash', maxPixels: 1e8 });
    const cache = new OutputCache(cut.boundaryShapes, 1 << 30, tempDir());
    let opened = 0;
    let open = 0;
    const part = new FrozenPart(tf, cut, pretrained.variant.preprocess, dataset, cache, null, async () => {
      opened++;
      open++;
      const session = await onnxSessionFor(cut.frozen!, { store });
      const close = session.close.bind(session);
      session.close = async () => {
        open--;
        await close();
      };
      return session;
    });
    const seen = [...dataset.splits.train, ...dataset.splits.val];
    expect(await part.fill(seen, 8)).toBe(36);
    expect([opened, open]).toEqual([1, 1]);
    // The test split is not cached yet: the session stays.
    await part.releaseIfCached([...seen, ...dataset.splits.test]);
    expect(open).toBe(1);
    await part.releaseIfCached(seen);
    expect(open).toBe(0);
    // Filling again computes nothing (all cached) and opens nothing; the test split is a miss and opens it again.
    expect(await part.fill(seen, 8)).toBe(0);
    expect(opened).toBe(1);
    expect(await part.fill(dataset.splits.test, 8)).toBe(12);
    expect([opened, open]).toEqual([2, 1]);
    await part.close();
    expect(open).toBe(0);
    cache.dispose();
    full.dispose();
  }, 60_000);
});
