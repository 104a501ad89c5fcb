// `tl slurm --shards N -- extract DATA --out DIR ...`: sbatch scripts for a sharded extraction and its merge.
import { Command } from 'commander';
import { z } from 'zod';
import { addCommonOptions, commonSchema, numeric, parseOptions, printJson } from './common.js';
import type { Io } from './io.js';
import { TL_BIN } from '../version.js';

const slurmSchema = commonSchema.extend({
  shards: numeric(z.number().int().min(1).max(100_000)),
  partition: z.string().min(1).optional(),
  time: z.string().min(1).optional(),
  cpusPerTask: numeric(z.number().int().min(1)).optional(),
  mem: z.string().min(1).optional(),
  sbatch: z.array(z.string()).default([]),
  submit: z.boolean().default(false),
  wait: z.boolean().default(false),
});

export function slurmCommand(io: Io): Command {
  const cmd = new Command('slurm')
    .description('write sbatch scripts that run `tl extract`, `tl cache`, `tl predict` or `tl eval` as a Slurm job array (one shard per task) and a merge job that runs after every task succeeded; --submit submits them')
    .argument('<COMMAND...>', 'after --: the tl command to shard, e.g. -- extract ./data --out ./features --model resnet50')
    .requiredOption('--shards <n>', 'array tasks (shards)')
    .option('--partition <name>', '#SBATCH --partition')
    .option('--time <limit>', '#SBATCH --time (per task)')
    .option('--cpus-per-task <n>', '#SBATCH --cpus-per-task')
    .option('--mem <size>', '#SBATCH --mem (per task)')
    .option('--sbatch <option>', 'another #SBATCH option, verbatim (repeatable), e.g. --sbatch=--account=proj', (v: string, prev: string[] = []) => [...prev, v])
    .option('--submit', 'submit the array and the dependent merge with sbatch')
    .option('--wait', 'with --submit: wait until the merge job ends (sbatch --wait)')
    .passThroughOptions();
  addCommonOptions(cmd, { backend: false });
  cmd.action(async (command: string[], raw: unknown) => {
    const opts = parseOptions(slurmSchema, raw);
    const { writeSlurmScripts, submit, sh } = await import('../shard/slurm.js');
    const scripts = await writeSlurmScripts({
      command, shards: opts.shards, ...(opts.partition ? { partition: opts.partition } : {}), ...(opts.time ? { time: opts.time } : {}),
      ...(opts.cpusPerTask ? { cpusPerTask: opts.cpusPerTask } : {}), ...(opts.mem ? { mem: opts.mem } : {}), extra: opts.sbatch,
      node: process.execPath, tl: TL_BIN,
    });
    const jobs = opts.submit ? submit(scripts, opts.wait, io.env) : null;
    if (opts.json) return printJson(io, { ...scripts, jobs });
    io.out(`wrote ${scripts.array} (${opts.shards} array tasks) and ${scripts.merge}; logs in ${scripts.logs}\n`);
    if (jobs) io.out(`submitted array job ${jobs.array} and merge job ${jobs.merge} (after the array succeeds)${opts.wait ? '; the merge has ended' : ''}: ${scripts.merged}\n`);
    else io.out(`submit with: jid=$(sbatch --parsable ${sh(scripts.array)}) && sbatch --dependency=afterok:"$jid" ${sh(scripts.merge)}\n`);
  });
  return cmd;
}
