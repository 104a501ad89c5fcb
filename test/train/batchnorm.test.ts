import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const chance = Math.log(3);

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 16, 32));
});

function options(extra: Partial<FinetuneOptions>): FinetuneOptions {
  return finetuneOptions(data, tempDir(), { model: 'mobilenet_v2_035', freeze: 100, epochs: 4, batchSize: 12, lr: 1e-3, bn: 'auto', calibrate: 'none', val: 0.25, test: 0, seed: 5, weights: 'random', engine: 'onnx', ...extra });
}

describe('BatchNormalization from a random start', () => {
  it('with random weights, --bn auto trains the statistics and the model learns; pinned statistics cannot', async () => {
    const before = tf.memory().numTensors;
    const learned = await finetune(tf, info, options({}));
    const pinned = await finetune(tf, info, options({ bn: 'frozen' }));
    expect(tf.memory().numTensors).toBe(before);
    expectLearned(learned.history, 3);
    // Frozen random BatchNorm statistics make the features vanish: the loss stays at ln(classes).
    expect(Math.abs(pinned.history.at(-1)!.loss - chance)).toBeLessThan(0.02);
  });

  it.each(['onnx', 'tfjs'] as const)('--bn train validates with recomputed statistics even at momentum 0.999 (%s)', async (engine) => {
    // MobileNetV2's momentum is 0.999: after a few dozen steps the moving averages have barely left their start, so
    // validating with them would be at chance; the statistics recomputed over training images are not.
    const r = await finetune(tf, info, options({ bn: 'train', engine, epochs: 3 }));
    expectLearned(r.history, 3);
    // Accuracy, not loss: a net this small trained from random weights to a train loss near 0 is overconfident, and
    // its validation loss over 12 images swings with the last digits of the arithmetic (Adam's steps amplify them).
    expect(r.history.at(-1)!.val_accuracy!).toBeGreaterThan(0.6);
  });
});
