// Runs that stopped at the worst moments: after the last checkpoint but before the model and report, before the first
// checkpoint, and runs that failed before any checkpoint (which leave nothing that looks like a run).
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { finetune, type FinetuneOptions, type FinetuneResult } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { collectNotices } from '../helpers/notices.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
let whole: FinetuneResult;

const options = (out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => finetuneOptions(data, out, { store, freeze: 'all', epochs: 3, batchSize: 8, lr: 0.01, val: 0.25, test: 0.25, seed: 4, engine: 'onnx', ...extra });

/** A copy of the finished run as a kill at `stage` would leave it. */
function killedCopy(stage: 'before-model' | 'before-first-checkpoint'): string {
  const dir = join(tempDir(), 'run');
  cpSync(whole.outDir, dir, { recursive: true });
  for (const name of ['model', 'model.onnx', 'report.json', 'report.md', 'report.html']) rmSync(join(dir, name), { recursive: true, force: true });
  if (stage === 'before-first-checkpoint') for (const name of ['checkpoints', 'metrics.csv']) rmSync(join(dir, name), { recursive: true, force: true });
  return dir;
}


beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 16, 32));
  whole = await finetune(tf, info, options(join(tempDir(), 'run')));
  expectLearned(whole.history, 3);
}, 120_000);

describe('--resume after a run stopped at the worst moment', () => {
  it('finishes a run killed after its last checkpoint but before its model and report were written', async () => {
    const dir = killedCopy('before-model');
    const { result, notices } = await collectNotices(() => finetune(tf, info, { ...options(dir), resume: true }));
    expect(notices).toContain(`${dir} trained all 3 epochs but stopped before writing its model and report: finishing it`);
    expect(result.history).toEqual(whole.history);
    expect(result.metrics).toEqual(whole.metrics);
    expect(result.calibration).toEqual(whole.calibration);
    for (const name of ['model/model.json', 'model.onnx', 'report.json', 'report.html']) expect(existsSync(join(dir, name)), name).toBe(true);
    // Once finished, it is finished.
    await expect(finetune(tf, info, { ...options(dir), resume: true })).rejects.toThrow('has already trained all 3 epochs');
  });

  it('starts over from its config a run whose first checkpoint was never written, saying so', async () => {
    const dir = killedCopy('before-first-checkpoint');
    const { result, notices } = await collectNotices(() => finetune(tf, info, { ...options(dir), resume: true }));
    expect(notices).toContain(`${dir} has no checkpoint (the run stopped before its first epoch ended): starting it over from its config.json`);
    expect(result.history.map((h) => [h.loss, h.val_loss])).toEqual(whole.history.map((h) => [h.loss, h.val_loss]));
    expect(result.metrics).toEqual(whole.metrics);
  });

  it('a run that fails before its first checkpoint leaves no config.json or split.json behind', async () => {
    const parent = tempDir();
    const dir = join(parent, 'run');
    mkdirSync(dir);
    // A file where the checkpoints folder goes: the first checkpoint cannot be written.
    writeFileSync(join(dir, 'checkpoints'), 'not a folder');
    await expect(finetune(tf, info, options(dir))).rejects.toThrow(/checkpoints/);
    expect(readdirSync(dir)).toEqual(['checkpoints']);
    expect(readFileSync(join(dir, 'checkpoints'), 'utf8')).toBe('not a folder');
  });

  it('a checkpoint that cannot be written fails the run, naming it, with no model or report that says it saved', async () => {
    const dir = join(tempDir(), 'run');
    // At epoch 2's end its last.ckpt cannot replace the file (a non-empty folder stands there).
    const onProgress = (e: { phase: string; epoch: number }) => {
      if (e.phase !== 'epoch' || e.epoch !== 2) return;
      const last = join(dir, 'checkpoints', 'last.ckpt');
      rmSync(last, { force: true });
      mkdirSync(join(last, 'in-the-way'), { recursive: true });
    };
    await expect(finetune(tf, info, options(dir, { onProgress }))).rejects.toThrow(/last\.ckpt/);
    expect(existsSync(join(dir, 'report.json'))).toBe(false);
  });
});
