// The sbatch scripts `tl slurm` writes, run under bash with hostile values: nothing a user passes may add a line to a
// script or run a command, and every argument reaches tl exactly as given.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { writeSlurmScripts } from '../../src/shard/slurm.js';
import { tempDir } from '../helpers/tmp.js';

/** A stand-in for tl: writes the arguments it was given as JSON into `argv.json` beside it. */
function recorder(dir: string): string {
  const path = join(dir, 'record.mjs');
  writeFileSync(path, `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(join(dir, 'argv.json'))}, JSON.stringify(process.argv.slice(2)));\n`);
  return path;
}

describe('tl slurm scripts', () => {
  it('refuse a newline (or any control character) in --out, an #SBATCH value or the command, writing nothing', async () => {
    const dir = tempDir();
    const env = { ...process.env, TL_HOME: tempDir() };
    const cases: string[][] = [
      ['--', 'extract', 'data', '--out', join(dir, 'out\ntouch pwned\n#')],
      ['--partition', 'p\ntouch pwned', '--', 'extract', 'data', '--out', join(dir, 'o1')],
      ['--time', '1:00\r\n#SBATCH --wrap=x', '--', 'extract', 'data', '--out', join(dir, 'o2')],
      ['--sbatch', '--account=a\ntouch pwned', '--', 'extract', 'data', '--out', join(dir, 'o3')],
      ['--', 'extract', 'da\nta', '--out', join(dir, 'o4')],
      ['--', 'extract', 'data', '--model', 'm\u0000x', '--out', join(dir, 'o5')],
    ];
    for (const args of cases) {
      const r = await runCli(['slurm', '--shards', '2', ...args], env);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/control character/);
    }
    // Values sbatch itself would split or read otherwise are refused in #SBATCH lines.
    for (const args of [['--partition', 'a b'], ['--mem', '4G"'], ['--sbatch', '--comment=$(touch pwned)'], ['--time', '1#x']]) {
      const r = await runCli(['slurm', '--shards', '2', ...args, '--', 'extract', 'data', '--out', join(dir, 'o6')], env);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/#SBATCH value may hold only/);
    }
    const spaced = await runCli(['slurm', '--shards', '2', '--', 'extract', 'data', '--out', join(dir, 'with space')], env);
    expect(spaced.exitCode).toBe(2);
    for (const name of ['o1', 'o2', 'o3', 'o4', 'o5', 'o6', 'with space']) expect(existsSync(join(dir, name)), name).toBe(false);
    expect(existsSync(join(process.cwd(), 'pwned'))).toBe(false);
  });

  it('pass quotes, $(...), spaces and semicolons in the command to tl as they are, running nothing (bash runs the scripts)', async () => {
    const dir = tempDir();
    const tl = recorder(dir);
    const hostile = join(dir, `my data/$(touch ${join(dir, 'pwned')});'x'"y"\`touch ${join(dir, 'pwned2')}\` & echo`);
    const out = join(dir, 'out');
    const scripts = await writeSlurmScripts({ command: ['extract', hostile, '--model', "a'b", '--out', out], shards: 3, partition: 'debug', time: '1:00:00', mem: '4G', extra: ['--account=proj'], node: process.execPath, tl });
    const array = readFileSync(scripts.array, 'utf8');
    expect(array.split('\n').filter((l) => l.startsWith('#SBATCH'))).toEqual([
      '#SBATCH --job-name=tl-extract', `#SBATCH --output=${join(out, 'logs', 'shard-%a.log')}`, '#SBATCH --partition=debug', '#SBATCH --time=1:00:00', '#SBATCH --mem=4G', '#SBATCH --account=proj', '#SBATCH --array=0-2',
    ]);
    const run = spawnSync('bash', [scripts.array], { encoding: 'utf8', cwd: dir });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'argv.json'), 'utf8'))).toEqual(['extract', hostile, '--model', "a'b", '--out', out, '--shard', 'auto', '--shards', '3']);
    mkdirSync(join(dir, 'again'));
    const merge = spawnSync('bash', [scripts.merge], { encoding: 'utf8', cwd: join(dir, 'again') });
    expect(merge.status, merge.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'argv.json'), 'utf8'))).toEqual(['merge', out, '--out', join(out, 'features.npy')]);
    expect(existsSync(join(dir, 'pwned'))).toBe(false);
    expect(existsSync(join(dir, 'pwned2'))).toBe(false);
  });
});
