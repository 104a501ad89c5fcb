// Discriminative rates (--lr-decay-per-block): the head at the rate, each backbone block toward the input at one more
// factor of the decay, on both engines, and through a checkpoint (one optimizer per rate on TensorFlow.js).
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { blockRateScales } from '../../src/model/rates.js';
import { buildVariant } from '../../src/registry/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { finetuneOptions } from '../helpers/options.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 8, 32));
});

const options = (extra: Partial<FinetuneOptions>): FinetuneOptions => finetuneOptions(data, tempDir(), { freeze: 100, epochs: 1, batchSize: 64, lr: 0.05, optimizer: 'sgd', dropout: 0, calibrate: 'none', inputSize: 48, val: 0.25, test: 0, seed: 3, store, ...extra });

/** The saved weights of a run, by name. */
async function weightsOf(out: string): Promise<Map<string, Float32Array>> {
  const model = await loadLayersModelFromFolder(tf, join(out, 'model', 'model.json'));
  const out2 = new Map(model.weights.map((w) => [w.originalName, Float32Array.from(w.read().dataSync() as Float32Array)]));
  model.dispose();
  return out2;
}

describe('--lr-decay-per-block', () => {
  it("scales: the head 1, the backbone's last block (its top convolution) d, block 16 d^2, down to the first block", () => {
    const backbone = buildVariant(tf, 'mobilenet_v2', { includeTop: false, inputSize: 64 });
    const { scales, blocks } = blockRateScales(backbone, backbone, 0.5);
    expect(blocks).toBe(19);
    // The top convolution after block 16 ends the backbone: it is the last block.
    expect(scales['block_16_project/kernel']).toBe(0.25);
    expect(scales['block_15_project/kernel']).toBe(0.125);
    expect(scales['block_16_expand/kernel']).toBe(0.25);
    expect(scales['Conv1/kernel']).toBe(0.5 ** 19);
    expect(scales['Conv_1/kernel']).toBe(0.5);
    backbone.dispose();
  });

  it('one SGD step moves each weight by its rate on both engines (the same weights after it)', async () => {
    // One step (the batch holds every training image), from the same initial weights: the move is rate x gradient.
    const plain = await finetune(tf, info, options({ engine: 'onnx' }));
    const before = await weightsOf((await finetune(tf, info, options({ engine: 'onnx', lr: 1e-30 }))).outDir);
    const moved = await weightsOf(plain.outDir);
    for (const engine of ['onnx', 'tfjs'] as const) {
      const decayed = await weightsOf((await finetune(tf, info, options({ engine, lrDecayPerBlock: 0.5 }))).outDir);
      for (const [name, scale] of [['predictions/kernel', 1], ['Conv_1/kernel', 0.5], ['block_16_project/kernel', 0.25], ['block_15_project/kernel', 0.125], ['block_12_expand/kernel', 0.5 ** 6]] as const) {
        const b = before.get(name)!;
        const full = moved.get(name)!;
        const part = decayed.get(name)!;
        let ratio = 0;
        let norm = 0;
        for (let i = 0; i < b.length; i++) {
          ratio += (part[i]! - b[i]!) * (full[i]! - b[i]!);
          norm += (full[i]! - b[i]!) ** 2;
        }
        expect(ratio / norm, `${engine} ${name}`).toBeCloseTo(scale, 3);
      }
      // The frozen layers do not move at all.
      expect(decayed.get('block_10_project/kernel')).toEqual(before.get('block_10_project/kernel'));
    }
  }, 180_000);

  it('a run resumed from a checkpoint (Adam, one optimizer per rate on TensorFlow.js) matches an unbroken run', async () => {
    const adam = { optimizer: 'adam' as const, lr: 1e-3, batchSize: 6, lrDecayPerBlock: 0.7, epochs: 3 };
    const whole = await finetune(tf, info, options({ ...adam, engine: 'tfjs' }));
    for (const [first, then] of [['tfjs', 'tfjs'], ['tfjs', 'onnx']] as const) {
      const start = await finetune(tf, info, options({ ...adam, engine: first, epochs: 1 }));
      const resumed = await finetune(tf, info, options({ ...adam, engine: then, resume: true, out: start.outDir }));
      resumed.history.forEach((row, i) => expect(Math.abs(row.loss - whole.history[i]!.loss) / whole.history[i]!.loss, `${first}->${then} epoch ${row.epoch}`).toBeLessThan(1e-4));
    }
  }, 180_000);
});
