// Training the tail on ONNX Runtime inside tl finetune: engine-neutral checkpoints, fallback, no leaks.
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { BackendInfo, SymbolicTensor, Tf } from '../../src/backend/index.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { onNotice } from '../../src/util/notice.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 10, 32));
});

const options = (out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => finetuneOptions(data, out, { freeze: 100, epochs: 3, batchSize: 6, lr: 1e-3, optimizer: 'sgd', dropout: 0.2, calibrate: 'none', inputSize: 48, val: 0.2, test: 0.2, seed: 5, store, ...extra });

const close = (x: number, y: number) => Math.abs(x - y) / Math.max(1e-6, Math.abs(y));

describe('the ONNX Runtime trainer in tl finetune', () => {
  it('checkpoints are engine-neutral: a run started on either engine resumes on the other and matches an unbroken run', async () => {
    // Without dropout the two engines agree to float32 noise. The resumed runs are built in this process after other
    // models with the same layer names, so tfjs numbers their variables differently from the run that wrote the
    // checkpoint (`kernel_1`): the momentum buffers must still be found (they were not: 14% off by epoch 2).
    const whole = await finetune(tf, info, options(tempDir(), { engine: 'tfjs', dropout: 0 }));
    expectLearned(whole.history, 3);
    for (const [first, then] of [['tfjs', 'onnx'], ['onnx', 'tfjs'], ['onnx', 'onnx']] as const) {
      const out = tempDir();
      const start = await finetune(tf, info, options(out, { engine: first, epochs: 1, dropout: 0 }));
      expect(start.phases[0]!.engine).toBe(first);
      const resumed = await finetune(tf, info, options(out, { engine: then, resume: true, dropout: 0 }));
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

  it('--bn train trains on ONNX Runtime and updates the moving statistics of trainable BatchNorm layers only', async () => {
    const out = tempDir();
    // From random weights, whose BatchNorm layers must train to learn.
    const r = await finetune(tf, info, options(out, { model: 'mobilenet_v2_035', weights: 'random', engine: 'onnx', bn: 'train', optimizer: 'adam', lr: 1e-3, inputSize: 64, epochs: 3 }));
    expect(r.phases[0]!.engine).toBe('onnx');
    expectLearned(r.history, 3);
    const { loadLayersModelFromFolder } = await import('../../src/weights/tfjs.js');
    const { buildVariant } = await import('../../src/registry/index.js');
    const { initializeWeights } = await import('../../src/registry/init.js');
    const trained = await loadLayersModelFromFolder(tf, join(out, 'model', 'model.json'));
    const start = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 64 });
    initializeWeights(tf, start, 5);
    let moved = 0;
    let kept = 0;
    start.layers.forEach((layer, index) => {
      if (layer.getClassName() !== 'BatchNormalization') return;
      const before = layer.getWeights()[2]!.dataSync();
      const after = trained.getLayer(layer.name).getWeights()[2]!.dataSync();
      const same = before.every((v, i) => v === after[i]);
      if (index < 100) {
        expect(same, `${layer.name} is frozen`).toBe(true);
        kept++;
      } else if (!same) moved++;
    });
    expect(kept).toBeGreaterThan(20);
    expect(moved).toBeGreaterThan(10);
    trained.dispose();
    start.dispose();
  });

  it('a tail with a layer the compiler cannot train trains on TensorFlow.js, saying why', async () => {
    // A user's LayersModel with an UpSampling2D layer, which has no gradient rule (seeded, so that it learns the same each run).
    const { saveLayersModel } = await import('../../src/weights/save.js');
    const input = tf.input({ shape: [32, 32, 3] });
    let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'down', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as SymbolicTensor;
    x = tf.layers.upSampling2d({ size: [2, 2], name: 'up' }).apply(x) as SymbolicTensor;
    x = tf.layers.conv2d({ filters: 4, kernelSize: 1, name: 'mix', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(x) as SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: x });
    const folder = tempDir();
    await saveLayersModel(tf, model, folder);
    model.dispose();
    const notices: string[] = [];
    const stop = onNotice((t) => notices.push(t));
    const r = await finetune(tf, info, options(tempDir(), { model: folder, preprocess: 'tf', inputSize: 32, freeze: 0, engine: 'onnx', optimizer: 'adam', lr: 1e-2, epochs: 5 }));
    stop();
    expect(r.phases[0]!.engine).toBe('tfjs');
    expectLearned(r.history, 3);
    expect(notices).toContain('the train phase trains on TensorFlow.js: up: layer class UpSampling2D has no gradient rule.');
  });

  it('leaks no tensors: the count is flat across epochs on the ONNX Runtime trainer', async () => {
    const before = tf.memory().numTensors;
    const r = await finetune(tf, info, options(tempDir(), { engine: 'onnx', optimizer: 'adam', lr: 3e-4 }));
    expect(r.phases[0]!.engine).toBe('onnx');
    expectLearned(r.history, 3);
    expect(new Set(r.tensorsAfterEpoch).size).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });
});
