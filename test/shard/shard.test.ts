import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { resolveShard, shardFolderName, shardOf } from '../../src/shard/index.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const env = { ...process.env, TL_HOME: tempDir() };
const common = ['--model', 'mobilenet_v2.nsfwjs', '--input-size', '64', '--engine', 'onnx', '--batch-size', '5', '--seed', '3'];

beforeAll(async () => {
  await makeColourDataset(data, 3, 9, 32);
  // A file that does not decode: skipped on one machine and by its shard alike.
  writeFileSync(join(data, 'class1', 'broken.png'), Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(40)]));
});

describe('which shard', () => {
  it('a path keeps its shard whatever else is in the dataset; the shards split the files', () => {
    const rels = Array.from({ length: 400 }, (_, i) => `class${i % 3}/img${i}.png`);
    const counts = [0, 0, 0, 0];
    for (const r of rels) counts[shardOf(r, 4)]!++;
    expect(Math.min(...counts)).toBeGreaterThan(60);
    // Fixed by the path alone (the first 4 bytes of its sha256, modulo N): machines, runs and tl versions agree, so
    // shards written apart merge. Computed independently: sha256('class0/img7.png') starts 53aca385.
    expect([shardOf('class0/img7.png', 4), shardOf('class0/img7.png', 7), shardOf('cats/001.jpg', 4), shardOf('cats/001.jpg', 7)]).toEqual([0x53aca385 % 4, 0x53aca385 % 7, 0xe03224ec % 4, 0xe03224ec % 7]);
  });

  it('I/N from the flag, Slurm array variables or a Kubernetes Indexed Job, saying which', () => {
    expect(resolveShard('2/4', {})).toEqual({ index: 2, count: 4, source: '--shard 2/4' });
    expect(resolveShard(undefined, { SLURM_ARRAY_TASK_ID: '6' })).toBeNull();
    expect(resolveShard('auto', { SLURM_ARRAY_TASK_ID: '6', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_MAX: '7' })).toEqual({ index: 2, count: 4, source: 'SLURM_ARRAY_TASK_ID=6 (array 4-7)' });
    expect(resolveShard('auto', { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '3' })).toMatchObject({ index: 1, count: 3 });
    // With --shards (as tl slurm's scripts pass it), a task re-run alone (sbatch --array=2) is still shard 2.
    expect(resolveShard('auto', { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_MIN: '2', SLURM_ARRAY_TASK_MAX: '2' }, 4)).toEqual({ index: 2, count: 4, source: 'SLURM_ARRAY_TASK_ID=2 (--shards 4)' });
    expect(resolveShard('auto', { JOB_COMPLETION_INDEX: '5' }, 8)).toEqual({ index: 5, count: 8, source: 'JOB_COMPLETION_INDEX=5 (--shards 8)' });
    expect(() => resolveShard('auto', { JOB_COMPLETION_INDEX: '5' })).toThrow(/pass --shards N/);
    expect(() => resolveShard('4/4', {})).toThrow(/I must be below N/);
    expect(() => resolveShard('auto', {})).toThrow(/no SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX/);
    expect(shardFolderName(3, 12)).toBe('shard-03-of-12');
  });
});

describe('tl extract --shard and tl merge', () => {
  it('four shards merged are byte for byte what one machine writes; a missing shard is named and re-run alone', async () => {
    const single = join(tempDir(), 'features.npy');
    const one = await runCli(['extract', data, ...common, '--out', single], env);
    expect(one.exitCode, one.stderr).toBe(0);
    const shards = tempDir();
    for (let i = 0; i < 4; i++) {
      const r = await runCli(['extract', data, ...common, '--shard', `${i}/4`, '--out', shards], env);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toContain(`shard ${i}/4 (from --shard ${i}/4)`);
    }
    const merged = join(tempDir(), 'features.npy');
    const m = await runCli(['merge', shards, '--out', merged], env);
    expect(m.exitCode, m.stderr).toBe(0);
    expect(readFileSync(merged).equals(readFileSync(single))).toBe(true);
    expect(readFileSync(merged.replace('.npy', '.index.csv'), 'utf8')).toBe(readFileSync(single.replace('.npy', '.index.csv'), 'utf8'));
    expect(m.stdout).toContain('skipped');

    // Shard 2 died before writing its manifest: merging names it; re-running that shard alone completes the set.
    rmSync(join(shards, 'shard-2-of-4', 'manifest.json'));
    const incomplete = await runCli(['merge', shards, '--out', join(tempDir(), 'x.npy')], env);
    expect(incomplete.exitCode).toBe(2);
    expect(incomplete.stderr).toMatch(/Shards 2 of 4 are missing or incomplete \(no manifest\.json in .*shard-2-of-4\): re-run them/);
    expect((await runCli(['extract', data, ...common, '--shard', '2/4', '--out', shards], env)).exitCode).toBe(0);
    const again = join(tempDir(), 'features.npy');
    expect((await runCli(['merge', shards, '--out', again], env)).exitCode).toBe(0);
    expect(readFileSync(again).equals(readFileSync(single))).toBe(true);

    // A shard run with other settings, or whose output changed after it finished, is refused.
    const other = tempDir();
    for (let i = 0; i < 2; i++) expect((await runCli(['extract', data, ...common, '--shard', `${i}/2`, '--out', other, ...(i === 1 ? ['--seed', '4'] : [])], env)).exitCode).toBe(0);
    const mixed = await runCli(['merge', other, '--out', join(tempDir(), 'y.npy')], env);
    expect(mixed.stderr).toMatch(/disagree on seed \(4 vs 3\)/);
    const npy = join(shards, 'shard-1-of-4', 'features.npy');
    const bytes = readFileSync(npy);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
    writeFileSync(npy, bytes);
    const damaged = await runCli(['merge', shards, '--out', join(tempDir(), 'z.npy')], env);
    expect(damaged.exitCode).toBe(1);
    expect(damaged.stderr).toContain('shard-1-of-4/features.npy does not match its manifest (changed or damaged): re-run shard 1.');
  });

  it('tl predict --shard: the merged predictions are the single-machine JSON lines', async () => {
    const args = ['--model', 'mobilenet_v2.nsfwjs', '--engine', 'onnx', '--batch-size', '4'];
    const single = join(tempDir(), 'p.jsonl');
    const one = await runCli(['predict', data, ...args, '--out', single], env);
    expect(one.exitCode, one.stderr).toBe(0);
    expect(readFileSync(single, 'utf8').trim().split('\n')).toHaveLength(27);
    const shards = tempDir();
    for (let i = 0; i < 3; i++) expect((await runCli(['predict', data, ...args, '--shard', `${i}/3`, '--out', shards], env)).exitCode).toBe(0);
    const merged = join(tempDir(), 'p.jsonl');
    const m = await runCli(['merge', shards, '--out', merged], env);
    expect(m.exitCode, m.stderr).toBe(0);
    expect(readFileSync(merged, 'utf8')).toBe(readFileSync(single, 'utf8'));
  });

  it('tl eval --shard: the merged metrics are the single-machine metrics', async () => {
    const run = join(tempDir(), 'run');
    const t = await runCli(['finetune', data, '--model', 'mobilenet_v2.nsfwjs', '--input-size', '64', '--freeze', 'all', '--lr', '0.01', '--epochs', '3', '--batch-size', '4', '--calibrate', 'none', '--out', run], env);
    expect(t.exitCode, t.stderr).toBe(0);
    const { expectRunLearned } = await import('../helpers/learned.js');
    expectRunLearned(run);
    const args = ['--model', run, '--split', 'all', '--engine', 'onnx', '--batch-size', '4'];
    const one = await runCli(['eval', ...args, '--out', join(tempDir(), 'report'), '--json'], env);
    expect(one.exitCode, one.stderr).toBe(0);
    const shards = tempDir();
    for (let i = 0; i < 3; i++) expect((await runCli(['eval', ...args, '--shard', `${i}/3`, '--out', shards], env)).exitCode).toBe(0);
    const merged = join(tempDir(), 'metrics.json');
    const m = await runCli(['merge', shards, '--out', merged], env);
    expect(m.exitCode, m.stderr).toBe(0);
    expect(JSON.parse(readFileSync(merged, 'utf8')).metrics).toEqual((JSON.parse(one.stdout) as { metrics: unknown }).metrics);
    expect(m.stdout).toMatch(/images 27 · accuracy/);
  });

  it('JSON lines shards merge to the single-machine file too', async () => {
    const single = join(tempDir(), 'f.jsonl');
    expect((await runCli(['extract', data, ...common, '--format', 'jsonl', '--out', single], env)).exitCode).toBe(0);
    const shards = tempDir();
    for (let i = 0; i < 3; i++) expect((await runCli(['extract', data, ...common, '--format', 'jsonl', '--shard', `${i}/3`, '--out', shards], env)).exitCode).toBe(0);
    const merged = join(tempDir(), 'f.jsonl');
    expect((await runCli(['merge', shards, '--out', merged], env)).exitCode).toBe(0);
    expect(readFileSync(merged, 'utf8')).toBe(readFileSync(single, 'utf8'));
  });
});
