// `tl slurm`: the sbatch scripts that run a sharded `tl extract` or `tl cache` as a Slurm job array and then merge it in a job that
// depends on the array's success. tl runs on the scheduler the cluster already has; it ships none of its own.
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EnvironmentError, UsageError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface SlurmOptions {
  /** The tl command and its arguments (`extract DATA --out DIR ...`), without --shard. */
  command: string[];
  shards: number;
  partition?: string;
  time?: string;
  cpusPerTask?: number;
  mem?: string;
  /** Extra `#SBATCH` lines, verbatim (e.g. `--account=proj`). */
  extra?: string[];
  /** The node and tl to run on the cluster (default: this process's). */
  node: string;
  tl: string;
}

export interface SlurmScripts {
  folder: string;
  array: string;
  merge: string;
  merged: string;
  logs: string;
}

/** Quotes a word for bash (single quotes; a quote inside becomes '\''). */
export const sh = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** Control characters (a newline ends a script line; NUL, CR, escapes and the rest have no place in one). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Refuses a value that would change a generated script's lines: `what` names it in the message. */
function scriptSafe(what: string, value: string): string {
  if (CONTROL.test(value)) throw new UsageError(`${what} ${JSON.stringify(value)} holds a control character (a newline, tab or escape): tl slurm writes it into a script and refuses it.`);
  return value;
}

/**
 * A value for an `#SBATCH` line. sbatch reads those lines itself (not bash) and ends a value at white space, so only
 * plain words are allowed there; anything else is refused rather than quoted in a way sbatch may read otherwise.
 */
function sbatchSafe(what: string, value: string): string {
  scriptSafe(what, value);
  if (!/^[\w@%+=:,./-]+$/.test(value)) throw new UsageError(`${what} ${JSON.stringify(value)}: an #SBATCH value may hold only letters, digits and @ % + = : , . / - _ (no spaces, quotes, $ or #).`, { suggestion: 'Choose a value (or an --out folder) without them.' });
  return value;
}

/** The value of `--name VALUE` or `--name=VALUE` in `args`. */
function optionValue(args: string[], names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    for (const n of names) {
      if (args[i] === n) return args[i + 1];
      if (args[i]!.startsWith(`${n}=`)) return args[i]!.slice(n.length + 1);
    }
  }
  return undefined;
}

/** Writes `<out>/slurm/<command>.sbatch` (the array) and `merge.sbatch` (the merge), and returns their paths. */
export async function writeSlurmScripts(options: SlurmOptions): Promise<SlurmScripts> {
  const [sub, ...rest] = options.command;
  if (sub !== 'extract' && sub !== 'cache' && sub !== 'predict' && sub !== 'eval') throw new UsageError(`tl slurm runs tl extract, tl cache, tl predict or tl eval as a job array; got '${sub ?? ''}'. Usage: tl slurm --shards N -- extract DATA --out DIR [options]`);
  if (rest.some((a) => a === '--shard' || a.startsWith('--shard=') || a === '--shards')) throw new UsageError('tl slurm adds --shard itself; leave it out of the command.');
  const out = optionValue(rest, ['--out', '-o']);
  if (out === undefined) throw new UsageError('tl slurm needs the command\'s --out FOLDER: the shards go into it.');
  const format = optionValue(rest, ['--format']) ?? 'npy';
  // Every value that enters a script is checked before anything is written: none may add a line to it.
  rest.forEach((a, i) => scriptSafe(`argument ${i + 2} of the command`, a));
  scriptSafe('the working folder', process.cwd());
  scriptSafe('the node path', options.node);
  scriptSafe('the tl path', options.tl);
  const folder = sbatchSafe('--out', resolve(scriptSafe('--out', out)));
  const scripts = join(folder, 'slurm');
  const logs = join(folder, 'logs');
  // The merged result: extract's file beside the shards, cache's folder (what `tl finetune --cache` takes).
  const merged = sub === 'extract' ? join(folder, `features.${format}`) : sub === 'predict' ? join(folder, 'predictions.jsonl') : sub === 'eval' ? join(folder, 'metrics.json') : join(folder, 'merged');
  const header = (name: string, output: string) => [
    '#!/bin/bash',
    `#SBATCH --job-name=${name}`,
    `#SBATCH --output=${output}`,
    ...(options.partition ? [`#SBATCH --partition=${sbatchSafe('--partition', options.partition)}`] : []),
    ...(options.time ? [`#SBATCH --time=${sbatchSafe('--time', options.time)}`] : []),
    ...(options.cpusPerTask ? [`#SBATCH --cpus-per-task=${options.cpusPerTask}`] : []),
    ...(options.mem ? [`#SBATCH --mem=${sbatchSafe('--mem', options.mem)}`] : []),
    ...(options.extra ?? []).map((e) => `#SBATCH ${sbatchSafe('--sbatch', e)}`),
  ];
  // Relative paths in the command are the submitting folder's: the job runs there.
  const cwd = process.cwd();
  const array = [
    ...header(`tl-${sub}`, join(logs, 'shard-%a.log')),
    `#SBATCH --array=0-${options.shards - 1}`,
    '# One shard per array task; re-run a failed shard alone with: sbatch --array=I THIS_SCRIPT',
    'set -euo pipefail',
    `cd ${sh(cwd)}`,
    `exec ${sh(options.node)} ${sh(options.tl)} ${[sub, ...rest].map(sh).join(' ')} --shard auto --shards ${options.shards}`,
    '',
  ].join('\n');
  const merge = [
    ...header('tl-merge', join(logs, 'merge.log')),
    '# Runs after every array task succeeded (sbatch --dependency=afterok:ARRAY_JOB).',
    'set -euo pipefail',
    `cd ${sh(cwd)}`,
    `exec ${sh(options.node)} ${sh(options.tl)} merge ${sh(folder)} --out ${sh(merged)}`,
    '',
  ].join('\n');
  await mkdir(scripts, { recursive: true });
  await mkdir(logs, { recursive: true });
  const arrayPath = join(scripts, `${sub}.sbatch`);
  const mergePath = join(scripts, 'merge.sbatch');
  await writeFileAtomic(arrayPath, array);
  await writeFileAtomic(mergePath, merge);
  return { folder, array: arrayPath, merge: mergePath, merged, logs };
}

/** Submits the array and the merge that depends on it; returns their job ids. `wait` blocks until the merge ends. */
export function submit(scripts: SlurmScripts, wait: boolean, env: NodeJS.ProcessEnv): { array: string; merge: string } {
  const run = (args: string[]) => {
    const r = spawnSync('sbatch', args, { encoding: 'utf8', env });
    if (r.error) throw new EnvironmentError(`Cannot run sbatch (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}): is this a Slurm login node?`, { suggestion: `Submit the scripts yourself: sbatch ${scripts.array}, then sbatch --dependency=afterok:JOB ${scripts.merge}.` });
    if (r.status !== 0) throw new EnvironmentError(`sbatch ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
    return r.stdout.trim().split(';')[0]!;
  };
  const array = run(['--parsable', scripts.array]);
  const merge = run(['--parsable', `--dependency=afterok:${array}`, '--kill-on-invalid-dep=yes', ...(wait ? ['--wait'] : []), scripts.merge]);
  return { array, merge };
}
