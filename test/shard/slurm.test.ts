// A real Slurm cluster (one node, started by .ci/slurm-up.sh; found through SLURM_CONF): tl extract as a job array,
// merged by a dependent job, equals one machine's output byte for byte; a killed task is re-run alone.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const slurm = process.env['SLURM_CONF'] !== undefined && spawnSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8' }).stdout?.split('\n').some((s) => s === 'idle' || s === 'mixed');
const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const common = ['--model', 'mobilenet_v2.nsfwjs', '--input-size', '64', '--engine', 'onnx', '--batch-size', '4', '--workers', '1', '--seed', '5'];
let reference: Buffer;
const cacheArgs = ['--model', 'mobilenet_v2.nsfwjs', '--freeze', '100', '--input-size', '64', '--engine', 'onnx', '--batch-size', '4', '--workers', '1'];
const singleCache = join(tempDir(), 'cache');

beforeAll(async () => {
  if (!slurm) return;
  await makeColourDataset(data, 3, 8, 32);
  const out = join(tempDir(), 'features.npy');
  const r = await runCli(['extract', data, ...common, '--out', out], env);
  expect(r.exitCode, r.stderr).toBe(0);
  reference = readFileSync(out);
  const c = await runCli(['cache', data, ...cacheArgs, '--out', singleCache], env);
  expect(c.exitCode, c.stderr).toBe(0);
}, 180_000);

/** Waits until Slurm no longer lists the job (every task ended). */
async function waitFor(job: string, seconds: number): Promise<void> {
  for (let i = 0; i < seconds; i++) {
    const q = spawnSync('squeue', ['-h', '-j', job], { encoding: 'utf8' });
    if (q.status === 0 && q.stdout.trim() === '') return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`Slurm job ${job} still listed after ${seconds} s`);
}

describe.runIf(slurm)('on a Slurm cluster', () => {
  it('tl slurm --submit --wait: a 4-task array of tl extract and the dependent merge give the single-machine bytes', async () => {
    const out = tempDir();
    const r = await runCli(['slurm', '--shards', '4', '--submit', '--wait', '--', 'extract', data, ...common, '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/submitted array job \d+ and merge job \d+/);
    for (let i = 0; i < 4; i++) expect(existsSync(join(out, `shard-${i}-of-4`, 'manifest.json')), `shard ${i}`).toBe(true);
    expect(readFileSync(join(out, 'logs', 'shard-1.log'), 'utf8')).toContain('shard 1/4 (from SLURM_ARRAY_TASK_ID=1 (--shards 4))');
    expect(readFileSync(join(out, 'features.npy')).equals(reference)).toBe(true);
  }, 300_000);

  it('tl cache as a 4-task array and its merge give the single-machine cache, file for file', async () => {
    const out = tempDir();
    const r = await runCli(['slurm', '--shards', '4', '--submit', '--wait', '--', 'cache', data, ...cacheArgs, '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of ['boundary-0.npy', 'boundary-1.npy', 'cache.json']) expect(readFileSync(join(out, 'merged', f)).equals(readFileSync(join(singleCache, f))), f).toBe(true);
  }, 300_000);

  it('a task killed mid-array leaves its shard incomplete; merge names it; re-running that task alone completes the set', async () => {
    const out = tempDir();
    const w = await runCli(['slurm', '--shards', '4', '--json', '--', 'extract', data, ...common, '--out', out], env);
    expect(w.exitCode, w.stderr).toBe(0);
    const scripts = JSON.parse(w.stdout) as { array: string };
    const sub = spawnSync('sbatch', ['--parsable', scripts.array], { encoding: 'utf8', env });
    expect(sub.status, sub.stderr).toBe(0);
    const job = sub.stdout.trim().split(';')[0]!;
    expect(spawnSync('scancel', [`${job}_2`]).status).toBe(0);
    await waitFor(job, 240);
    const merged = join(tempDir(), 'features.npy');
    const incomplete = await runCli(['merge', out, '--out', merged], env);
    expect(incomplete.exitCode).toBe(2);
    expect(incomplete.stderr).toMatch(/Shards 2 of 4 are missing or incomplete/);
    const rerun = spawnSync('sbatch', ['--wait', '--array=2', scripts.array], { encoding: 'utf8', env });
    expect(rerun.status, rerun.stderr).toBe(0);
    const done = await runCli(['merge', out, '--out', merged], env);
    expect(done.exitCode, done.stderr).toBe(0);
    expect(readFileSync(merged).equals(reference)).toBe(true);
  }, 300_000);
});

describe.skipIf(slurm)('on a Slurm cluster', () => {
  it('skipped: no Slurm cluster here (SLURM_CONF unset or no idle node; .ci/slurm-up.sh starts one as root)', () => {});
});
