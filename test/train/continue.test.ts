import { renameSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { makeColourDataset, wasmWithColourData } from '../helpers/synthetic.js';
import { collectNotices } from '../helpers/notices.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
const twoClasses = tempDir();

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 16, 32));
  await makeColourDataset(join(twoClasses, 'tmp'), 2, 12, 32);
  for (const c of ['class0', 'class1']) renameSync(join(twoClasses, 'tmp', c), join(twoClasses, c === 'class0' ? 'red' : 'green'));
  rmdirSync(join(twoClasses, 'tmp'));
});

function options(extra: Partial<FinetuneOptions>): FinetuneOptions {
  return finetuneOptions(data, tempDir(), { model: 'mobilenet_v2_035', freeze: 100, epochs: 3, batchSize: 8, lr: 1e-3, bn: 'frozen', val: 0.25, test: 0, seed: 2, weights: 'random', bnMomentum: 0.9, engine: 'onnx', ...extra });
}


describe('-m RUN continues fine-tuning a run', () => {
  it('with its own classifier head when the classes match; --new-head and other classes start a fresh head', async () => {
    // A short first run, so that its validation loss is neither chance nor zero.
    const first = await finetune(tf, info, options({ bn: 'train', epochs: 3, lr: 1e-3 }));
    // The saved model's validation loss: its best epoch's (12 validation images are too few to calibrate on).
    expect(first.calibration).toMatchObject({ applied: false, reason: 'the validation split has 12 images; a temperature needs at least 20' });
    const trainedValLoss = first.history.find((h) => h.epoch === first.best!.epoch)!.val_loss!;
    expect(trainedValLoss).toBeLessThan(0.9 * Math.log(3));
    expect(trainedValLoss).toBeGreaterThan(0.05);
    // One epoch of plain SGD at a negligible rate: the continued model validates as the run ended (its head kept).
    // With the first run's --bn train, both evaluate the same graph: this random network on near-constant images
    // amplifies rounding through its BatchNorm layers, so folding them (--bn frozen) moves its loss by ~3e-3.
    const tiny = { model: first.outDir, epochs: 1, lr: 1e-30, optimizer: 'sgd' as const, momentum: 0, calibrate: 'none' as const, bn: 'train' as const };
    const cont = await collectNotices(() => finetune(tf, info, options(tiny)));
    expect(cont.notices.some((n) => n.startsWith('continuing with the classifier head of mobilenet_v2_035'))).toBe(true);
    expect(Math.abs(cont.result.history[0]!.val_loss! - trainedValLoss)).toBeLessThan(1e-5 * trainedValLoss);
    const fresh = await finetune(tf, info, options({ ...tiny, newHead: true }));
    expect(Math.abs(fresh.history[0]!.val_loss! - trainedValLoss)).toBeGreaterThan(0.1 * trainedValLoss);
    const other = await collectNotices(() => finetune(tf, info, options({ ...tiny, data: twoClasses, lr: 1e-3 })));
    expect(other.notices.some((n) => n.startsWith("a new classifier head replaces mobilenet_v2_035") && n.includes('(class0, class1, class2)') && n.includes('(green, red)'))).toBe(true);
    expect(other.result.classes).toEqual(['green', 'red']);
  });
});

describe('checkpoints', () => {
  it('hold only the layers some phase trains, and refuse to resume when the frozen weights changed', async () => {
    const { readCheckpoint } = await import('../../src/train/checkpoint.js');
    const { readFileSync, writeFileSync } = await import('node:fs');
    // From pretrained weights, so that both runs learn.
    const pretrained = { model: 'mobilenet_v2.nsfwjs', weights: 'pretrained' as const, store, epochs: 2, freeze: 'all' as const, lr: 0.01, calibrate: 'none' as const };
    const base = await finetune(tf, info, options(pretrained));
    expectLearned(base.history, 3, 'the first run');
    const run = await finetune(tf, info, options({ ...pretrained, model: base.outDir, newHead: true }));
    expectLearned(run.history, 3, 'the run continued from it');
    const last = await readCheckpoint<{ frozenDigest: string }>(join(run.outDir, 'checkpoints', 'last.ckpt'));
    // Head only: the classifier's kernel and bias, not MobileNetV2's 260 backbone weights.
    expect(last.groups.weights!.map((w) => w.name)).toEqual(['predictions/kernel', 'predictions/bias']);
    expect(last.state.frozenDigest).toMatch(/^[0-9a-f]{64}$/);
    // The backbone the run started from changes: resuming it would mix two models.
    const bin = join(base.outDir, 'model', 'weights.bin');
    const bytes = readFileSync(bin);
    // Past the first weights (tfjs writes the trainable head's first), inside the backbone.
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    floats[Math.floor(floats.length / 2)] = floats[Math.floor(floats.length / 2)]! + 1;
    writeFileSync(bin, bytes);
    const err = await finetune(tf, info, { ...options({ ...pretrained, model: base.outDir, epochs: 3, newHead: true }), out: run.outDir, resume: true }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('differ from those the run');
  });
});
