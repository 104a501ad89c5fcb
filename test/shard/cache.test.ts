import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type BackendInfo, type Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const home = tempDir();
const env = { ...process.env, TL_HOME: home };
const cacheArgs = ['--model', 'mobilenet_v2.nsfwjs', '--freeze', '100', '--input-size', '64', '--engine', 'onnx', '--batch-size', '6'];
const single = join(tempDir(), 'cache');

beforeAll(async () => {
  ({ tf, info } = await loadBackend({ choice: 'wasm' }));
  await makeColourDataset(data, 3, 10, 32);
  const r = await runCli(['cache', data, ...cacheArgs, '--out', single], env);
  expect(r.exitCode, r.stderr).toBe(0);
}, 120_000);

const options = (extra: Partial<FinetuneOptions>): FinetuneOptions => ({
  data, model: 'mobilenet_v2.nsfwjs', store: home, out: tempDir(), freeze: 100, epochs: 5, batchSize: 6, lr: 3e-4, accumulate: 1, bn: 'frozen', dropout: 0,
  calibrate: 'none', augment: 'none', inputSize: 64, val: 0.2, test: 0.2, seed: 2, resize: 'center-crop', maxPixels: 1e8, weights: 'pretrained', featureCacheBytes: 1 << 30, workers: 1, engine: 'onnx', ...extra,
});

describe('tl cache, its shards, and tl finetune --features', () => {
  it('three shards merged are the single-machine cache, file for file and byte for byte', async () => {
    // --freeze 100 cuts inside a residual block: two tensors cross, so two boundary files.
    expect(readdirSync(single).sort()).toEqual(['boundary-0.npy', 'boundary-1.npy', 'cache.json']);
    const shards = tempDir();
    for (let i = 0; i < 3; i++) {
      const r = await runCli(['cache', data, ...cacheArgs, '--shard', `${i}/3`, '--out', shards], env);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const merged = join(tempDir(), 'merged');
    const m = await runCli(['merge', shards, '--out', merged], env);
    expect(m.exitCode, m.stderr).toBe(0);
    for (const f of readdirSync(single)) expect(readFileSync(join(merged, f)).equals(readFileSync(join(single, f))), f).toBe(true);
  });

  it('trains the tail from the cache exactly as from the frozen part, running none of it', async () => {
    const before = tf.memory().numTensors;
    const own = await finetune(tf, info, options({}));
    const cached = await finetune(tf, info, options({ features: single }));
    expect(tf.memory().numTensors).toBe(before);
    expectLearned(cached.history, 3);
    expect(cached.cache.hitRate).toBe(1);
    expect(cached.history.map((h) => [h.loss, h.val_loss])).toEqual(own.history.map((h) => [h.loss, h.val_loss]));
    expect(cached.metrics!.accuracy).toBe(own.metrics!.accuracy);
  });

  it('refuses a cache made with other settings, naming the difference', async () => {
    await expect(finetune(tf, info, options({ features: single, freeze: 107 }))).rejects.toThrow(`--features ${single} was computed with --freeze 100; this run uses 107.`);
    await expect(finetune(tf, info, options({ features: single, inputSize: 96 }))).rejects.toThrow(`--features ${single} was computed with --input-size 64; this run uses 96.`);
    await expect(finetune(tf, info, options({ features: single, weights: 'random' }))).rejects.toThrow(/was computed with frozen weights of sha256 [0-9a-f]{12}; this run uses [0-9a-f]{12}/);
    await expect(finetune(tf, info, options({ features: tempDir() }))).rejects.toThrow(/is not a frozen-part cache \(no cache.json\)/);
  });
});
