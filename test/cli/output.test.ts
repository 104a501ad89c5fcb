import { Writable } from 'node:stream';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { execute, runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';
import { expectRunLearned } from '../helpers/learned.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
});

describe('what a run shows', () => {
  it('on a terminal, every finished epoch stays on screen with its phase, and the spinner shows the run ETA', async () => {
    let screen = '';
    const errStream = new Writable({ write: (chunk: Buffer, _enc, done) => ((screen += chunk.toString()), done()) });
    let out = '';
    const io: Io = { out: (t) => void (out += t), err: (t) => void (screen += t), isTTY: true, color: false, env, errStream };
    const run = join(tempDir(), 'run');
    const code = await execute(['finetune', data, '--input-size', '48', '--head-epochs', '1', '--epochs', '2', '--batch-size', '2', '--out', run], io);
    expect(code, screen).toBe(0);
    expectRunLearned(run);
    expect(screen).toMatch(/epoch 1\/3 \(head\): loss \d/);
    expect(screen).toMatch(/epoch 2\/3 \(fine-tune\): loss \d/);
    expect(screen).toMatch(/epoch 3\/3 \(fine-tune\): loss \d/);
    expect(screen).toContain('run ETA');
    expect(out).toContain('wrote ');
  });

  it('--json failures print one JSON error document on stdout', async () => {
    const missing = await runCli(['finetune', join(tempDir(), 'nothing-here'), '--json'], env);
    expect(missing.exitCode).toBe(1);
    const doc = JSON.parse(missing.stdout) as { error: { code: string; message: string; exitCode: number } };
    expect(doc.error).toMatchObject({ code: 'E_DATASET', exitCode: 1 });
    expect(doc.error.message).toContain('nothing-here');
    const usage = await runCli(['finetune', data, '--json', '--bogus'], env);
    expect(usage.exitCode).toBe(2);
    expect((JSON.parse(usage.stdout) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('--bogus') });
    const bad = await runCli(['finetune', data, '--json', '--batch-size', 'x'], env);
    expect((JSON.parse(bad.stdout) as { error: { code: string; message: string } }).error.message).toContain('received "x"');
  });

  it('tl eval of a folder that does not exist says so', async () => {
    const r = await runCli(['eval', '--model', join(tempDir(), 'no-such-run')], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/error: No run at .*no-such-run: the folder does not exist\./);
  });
});
