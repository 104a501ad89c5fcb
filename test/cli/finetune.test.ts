import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { BIN, runTl } from '../helpers/cli.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
beforeAll(async () => {
  await makeColourDataset(data, 2, 10, 40);
});

describe('tl finetune', () => {
  it('writes a loadable model, labels, split, metrics.csv and report.json', async () => {
    const out = join(tempDir(), 'run');
    const r = await runTl(['finetune', data, '--input-size', '48', '--epochs', '3', '--batch-size', '4', '--out', out, '--json'], { TL_HOME: home });
    expect(r.stderr).toMatch(/^backend: wasm/);
    expect(r.exitCode).toBe(0);
    expectRunLearned(out);
    const result = JSON.parse(r.stdout) as { history: unknown[]; classes: string[] };
    expect(result.history).toHaveLength(3);
    expect(result.classes).toEqual(['class0', 'class1']);
    for (const f of ['model/model.json', 'model/weights.bin', 'labels.json', 'config.json', 'split.json', 'metrics.csv', 'report.json']) expect(existsSync(join(out, f)), f).toBe(true);
    const csv = readFileSync(join(out, 'metrics.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,img_per_s');
    expect(csv).toHaveLength(4);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model: string; epochs: number; lr: number; workers: number };
    // Without --freeze, MobileNetV2 fine-tunes from layer 100 (Keras's guide), so --lr auto is 0.0001.
    expect(config).toMatchObject({ model: 'mobilenet_v2.nsfwjs', epochs: 3, lr: 1e-4, freeze: 100, frozenLayers: 100 });
    expect(r.stderr).toContain("notice: --freeze 100 (mobilenet_v2.nsfwjs's default: Keras's transfer-learning guide");
    expect(config.workers).toBeGreaterThanOrEqual(1);
  });

  it('--epochs auto is 3 when backbone layers train and 10 for the head alone; a model without a recipe trains its head', async () => {
    const partial = join(tempDir(), 'run');
    const r = await runTl(['finetune', data, '--input-size', '32', '--batch-size', '4', '--lr', '3e-4', '--calibrate', 'none', '--out', partial], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(partial, 'config.json'), 'utf8'))).toMatchObject({ epochs: 3, freeze: 100 });
    expectRunLearned(partial);
    // A TensorFlow.js model that tl did not write (here: pretrained MobileNetV2 saved as a plain LayersModel).
    const { loadBackend } = await import('../../src/backend/index.js');
    const { loadPretrained } = await import('../../src/weights/index.js');
    const { saveLayersModel } = await import('../../src/weights/save.js');
    const { tf } = await loadBackend({ choice: 'wasm' });
    const plain = tempDir();
    const pretrained = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, inputSize: 64, store: tempDir() });
    await saveLayersModel(tf, pretrained.model, plain);
    pretrained.model.dispose();
    const head = join(tempDir(), 'run');
    const h = await runTl(['finetune', data, '--model', plain, '--preprocess', 'raw01', '--input-size', '64', '--batch-size', '2', '--out', head], { TL_HOME: home });
    expect(h.exitCode, h.stderr).toBe(0);
    expect(h.stderr).toContain(`notice: --freeze all (the head alone): ${plain}`);
    expect(h.stderr).toContain('has no default fine-tuning point');
    expect(JSON.parse(readFileSync(join(head, 'config.json'), 'utf8'))).toMatchObject({ epochs: 10, freeze: 'all', lr: 1e-3 });
    expectRunLearned(head);
  });

  it('an unknown model fails with the list of known models, exit 1', async () => {
    const r = await runTl(['finetune', data, '--model', 'resnet51'], { TL_HOME: home });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Unknown model 'resnet51'. Known models: .*resnet50/);
  });

  it('ResNet50 --freeze 140 trains a batch of 16 at 224px within the wasm heap', async () => {
    const small = tempDir();
    await makeColourDataset(small, 2, 9, 32);
    const out = join(tempDir(), 'r');
    const r = await runTl(['finetune', small, '--model', 'resnet50', '--weights', 'random', '--freeze', '140', '--batch-size', '16', '--epochs', '5', '--lr', '1e-3', '--val', '0', '--test', '0', '--out', out, '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(out);
    const result = JSON.parse(r.stdout) as { frozenLayers: number; boundaryLayers: string[]; wasmHeapBytes: number };
    expect(result.frozenLayers).toBe(140);
    expect(result.boundaryLayers.length).toBe(2);
    expect(result.wasmHeapBytes).toBeLessThan(4 * 1024 ** 3);
  });
});

describe('tl finetune interrupted (spawned)', () => {
  /** Starts a long run, sends `signal` once the third epoch is reported (the head has learned by then), and waits for the exit. */
  function interruptAfterThirdEpoch(signal: 'SIGINT' | 'SIGTERM', out: string, engine: string): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'finetune', data, '--input-size', '48', '--freeze', 'all', '--lr', '0.01', '--epochs', '500', '--batch-size', '2', '--workers', '1', '--engine', engine, '--out', out], { env: { ...process.env, TL_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!sent && /epoch 3\/500/.test(stderr)) {
          sent = true;
          child.kill(signal);
        }
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  for (const [signal, code, engine] of [['SIGINT', 130, 'onnx'], ['SIGTERM', 143, 'onnx'], ['SIGINT', 130, 'tfjs']] as const) {
    it(`${signal} finishes the batch, writes the model and a partial report, and exits ${code} (${engine})`, async () => {
      const out = join(tempDir(), 'run');
      const r = await interruptAfterThirdEpoch(signal, out, engine);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(new RegExp(`${signal}: finishing the current batch`));
      const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { stopReason: string; history: unknown[] };
      expect(report.stopReason).toMatch(new RegExp(`^interrupted by ${signal} in epoch \\d+`));
      expect(report.history.length).toBeGreaterThanOrEqual(1);
      expectRunLearned(out);
      expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
    });
  }
});

describe('tl finetune --resume and --config', () => {
  const colour = tempDir();
  beforeAll(async () => {
    await makeColourDataset(colour, 3, 12, 32);
  });
  // Two phases, dropout, augmentation (no feature cache, so every epoch does the full work) and two replicas.
  const common = ['--input-size', '64', '--freeze', '100', '--head-epochs', '1', '--epochs', '5', '--augment', 'light', '--batch-size', '4', '--dropout', '0.3', '--workers', '2', '--seed', '9'];
  const columns = (out: string) => readFileSync(join(out, 'metrics.csv'), 'utf8').trim().split('\n').map((line) => line.split(',').slice(0, 6).join(','));

  for (const engine of ['onnx', 'tfjs'] as const) it(`a run interrupted by SIGINT and resumed gives the metrics of an uninterrupted run (${engine})`, async () => {
    const args = [...common, '--engine', engine];
    const whole = join(tempDir(), 'whole');
    const r = await runTl(['finetune', colour, ...args, '--out', whole], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(whole);

    const cut = join(tempDir(), 'cut');
    const stopped = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'finetune', colour, ...args, '--out', cut], { env: { ...process.env, TL_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        // Inside the second (fine-tuning) phase, so its optimizer state must survive too.
        if (/epoch 2\/6/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(existsSync(join(cut, 'checkpoints', 'last.ckpt'))).toBe(true);
    const partial = columns(cut);
    expect(partial.length).toBeLessThan(7);

    const resumed = await runTl(['finetune', '--resume', cut, '--json'], { TL_HOME: home });
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const result = JSON.parse(resumed.stdout) as { resumedFrom: { epoch: number } };
    expect(result.resumedFrom.epoch).toBe(partial.length);
    expect(columns(cut)).toEqual(columns(whole));
    expect(JSON.parse(readFileSync(join(cut, 'report.json'), 'utf8')).test).toEqual(JSON.parse(readFileSync(join(whole, 'report.json'), 'utf8')).test);

    // A finished run trains on only when asked for more epochs; its settings cannot change.
    const again = await runTl(['finetune', '--resume', cut], { TL_HOME: home });
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/has already trained all 6 epochs/);
    const changed = await runTl(['finetune', '--resume', cut, '--lr', '0.1'], { TL_HOME: home });
    expect(changed.exitCode).toBe(2);
    expect(changed.stderr).toMatch(/--lr cannot change/);
    const more = await runTl(['finetune', '--resume', cut, '--epochs', '6', '--json'], { TL_HOME: home });
    expect(more.exitCode, more.stderr).toBe(0);
    expect((JSON.parse(more.stdout) as { history: unknown[] }).history).toHaveLength(7);
  });

  it('--config FILE.json sets options, flags override it, and the effective config is saved', async () => {
    const dir = tempDir();
    const file = join(dir, 'cfg.json');
    const out = join(dir, 'run');
    writeFileSync(file, JSON.stringify({ data: colour, model: 'mobilenet_v2.nsfwjs', inputSize: 48, epochs: 2, batchSize: 6, freeze: 'all', optimizer: 'sgd', lr: 0.01, labelSmoothing: 0.1 }));
    const r = await runTl(['finetune', '--config', file, '--epochs', '4', '--out', out, '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expectRunLearned(out);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ data: colour, model: 'mobilenet_v2.nsfwjs', epochs: 4, batchSize: 6, freeze: 'all', optimizer: 'sgd', momentum: 0.9, labelSmoothing: 0.1, inputSize: 48 });

    writeFileSync(file, JSON.stringify({ epochs: 2, batchsize: 4 }));
    const bad = await runTl(['finetune', colour, '--config', file], { TL_HOME: home });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain(`--config ${file}: 'batchsize'`);
    writeFileSync(file, JSON.stringify({ epochs: 'many' }));
    const wrong = await runTl(['finetune', colour, '--config', file], { TL_HOME: home });
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toContain(`--config ${file}: key 'epochs'`);
    writeFileSync(file, '{"epochs": 2,');
    const broken = await runTl(['finetune', colour, '--config', file], { TL_HOME: home });
    expect(broken.stderr).toContain(`--config ${file} is not valid JSON`);
  });
});
