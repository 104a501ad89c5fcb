// Training the tail on ONNX Runtime inside tl finetune: engine-neutral checkpoints, fallback, no leaks.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type BackendInfo, type Tf } from '../../src/backend/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { onNotice } from '../../src/util/notice.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
beforeAll(async () => {
  ({ tf, info } = await loadBackend({ choice: 'wasm' }));
  await makeColourDataset(data, 3, 10, 32);
});

const options = (out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => ({
  data, model: 'mobilenet_v2_035', out, freeze: 100, epochs: 3, batchSize: 6, lr: 0.01, optimizer: 'sgd', accumulate: 1, bn: 'frozen', dropout: 0.2,
  augment: 'none', inputSize: 48, val: 0.2, test: 0.2, seed: 5, resize: 'squash', maxPixels: 1e8, weights: 'random', featureCacheBytes: 1 << 28, workers: 1, store, ...extra,
});

const close = (x: number, y: number) => Math.abs(x - y) / Math.max(1e-6, Math.abs(y));

describe('the ONNX Runtime trainer in tl finetune', () => {
  it('checkpoints are engine-neutral: a run started on either engine resumes on the other and matches an unbroken run', async () => {
    const whole = await finetune(tf, info, options(tempDir(), { engine: 'tfjs' }));
    for (const [first, then] of [['tfjs', 'onnx'], ['onnx', 'tfjs']] as const) {
      const out = tempDir();
      const start = await finetune(tf, info, options(out, { engine: first, epochs: 1 }));
      expect(start.phases[0]!.engine).toBe(first);
      const resumed = await finetune(tf, info, options(out, { engine: then, resume: true }));
      expect(resumed.phases[0]!.engine).toBe(then);
      expect(resumed.resumedFrom).toEqual({ epoch: 2, batches: 0 });
      // SGD with momentum: the momentum buffers crossed engines; float32 noise stays at its size.
      resumed.history.forEach((row, i) => {
        const ref = whole.history[i]!;
        expect(close(row.loss, ref.loss), `${first}->${then} epoch ${row.epoch} loss`).toBeLessThan(1e-4);
        expect(close(row.val_loss!, ref.val_loss!), `${first}->${then} epoch ${row.epoch} val_loss`).toBeLessThan(1e-4);
      });
    }
  }, 180_000);

  it('a tail the compiler cannot train (--bn train) trains on TensorFlow.js, saying why', async () => {
    const notices: string[] = [];
    const stop = onNotice((t) => notices.push(t));
    const r = await finetune(tf, info, options(tempDir(), { engine: 'onnx', bn: 'train', epochs: 1 }));
    stop();
    expect(r.phases[0]!.engine).toBe('tfjs');
    expect(notices, notices.join('\n')).toContain('the train phase trains on TensorFlow.js: block_11_depthwise_BN: training BatchNormalization (--bn train) has no gradient rule yet.');
  });

  it('leaks no tensors: the count is flat across epochs on the ONNX Runtime trainer', async () => {
    const before = tf.memory().numTensors;
    const r = await finetune(tf, info, options(tempDir(), { engine: 'onnx', optimizer: 'adam', lr: 1e-3 }));
    expect(r.phases[0]!.engine).toBe('onnx');
    expect(new Set(r.tensorsAfterEpoch).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });
});
