import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { BIN, spawnTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
beforeAll(async () => {
  await makeColourDataset(data, 2, 10, 40);
});

describe('tl finetune (spawned bin/tl.js)', () => {
  it('writes a loadable model, labels, split, metrics.csv and report.json', async () => {
    const out = join(tempDir(), 'run');
    const r = await spawnTl(['finetune', data, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '48', '--epochs', '2', '--batch-size', '4', '--out', out, '--json'], { TL_HOME: home });
    expect(r.stderr).toMatch(/^backend: wasm/);
    expect(r.exitCode).toBe(0);
    const result = JSON.parse(r.stdout) as { history: unknown[]; classes: string[] };
    expect(result.history).toHaveLength(2);
    expect(result.classes).toEqual(['class0', 'class1']);
    for (const f of ['model/model.json', 'model/weights.bin', 'labels.json', 'config.json', 'split.json', 'metrics.csv', 'report.json']) expect(existsSync(join(out, f)), f).toBe(true);
    const csv = readFileSync(join(out, 'metrics.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,img_per_s');
    expect(csv).toHaveLength(3);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model: string; epochs: number; lr: number; workers: number };
    // --freeze all (the default) trains the head only, so --lr auto is 0.001.
    expect(config).toMatchObject({ model: 'mobilenet_v2_035', epochs: 2, lr: 1e-3 });
    expect(config.workers).toBeGreaterThanOrEqual(1);
  });

  it('an unknown model fails with the list of known models, exit 1', async () => {
    const r = await spawnTl(['finetune', data, '--model', 'resnet51'], { TL_HOME: home });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Unknown model 'resnet51'. Known models: .*resnet50/);
  });

  it('ResNet50 --freeze 140 trains a batch of 16 at 224px within the wasm heap', async () => {
    const small = tempDir();
    await makeColourDataset(small, 2, 9, 32);
    const r = await spawnTl(['finetune', small, '--model', 'resnet50', '--weights', 'random', '--freeze', '140', '--batch-size', '16', '--epochs', '1', '--val', '0', '--test', '0', '--out', join(tempDir(), 'r'), '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { frozenLayers: number; boundaryLayers: string[]; wasmHeapBytes: number };
    expect(result.frozenLayers).toBe(140);
    expect(result.boundaryLayers.length).toBe(2);
    expect(result.wasmHeapBytes).toBeLessThan(4 * 1024 ** 3);
  });
});

describe('tl finetune interrupted (spawned)', () => {
  /** Starts a long run, sends `signal` once the first epoch is reported, and waits for the exit. */
  function interruptAfterFirstEpoch(signal: 'SIGINT' | 'SIGTERM', out: string): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'finetune', data, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '48', '--epochs', '500', '--batch-size', '2', '--workers', '1', '--out', out], { env: { ...process.env, TL_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!sent && /epoch 1\/500/.test(stderr)) {
          sent = true;
          child.kill(signal);
        }
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} finishes the batch, writes the model and a partial report, and exits ${code}`, async () => {
      const out = join(tempDir(), 'run');
      const r = await interruptAfterFirstEpoch(signal, out);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(new RegExp(`${signal}: finishing the current batch`));
      const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { stopReason: string; history: unknown[] };
      expect(report.stopReason).toMatch(new RegExp(`^interrupted by ${signal} in epoch \\d+`));
      expect(report.history.length).toBeGreaterThanOrEqual(1);
      expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
    });
  }
});
