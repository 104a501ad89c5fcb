// `tl store` and `tl store prune`: what the model store holds, and removing what can be rebuilt or fetched again.
import { Command } from 'commander';
import Table from 'cli-table3';
import { PRUNE_OPTIONS } from '../options/commands.js';
import { defaultOf, schemaOf } from '../util/options.js';
import { addCommonOptions, addOptions, commonSchema, parseOptions, printJson } from './common.js';
import type { Io } from './io.js';

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

export function storeCommand(io: Io): Command {
  const cmd = new Command('store').description('list the model store ($TL_HOME): cached ONNX graphs, weights, sizes and last use').enablePositionalOptions();
  addCommonOptions(cmd, { backend: false });
  cmd.action(async (raw: unknown) => {
    const opts = parseOptions(commonSchema, raw);
    const { storeRoot } = await import('../store/index.js');
    const { listStore } = await import('../store/inventory.js');
    const root = storeRoot(io.env);
    const entries = await listStore(root);
    const total = entries.reduce((a, e) => a + e.bytes, 0);
    if (opts.json) return printJson(io, { root, bytes: total, entries });
    const table = new Table({ head: ['kind', 'entry', 'size', 'last used', 'if removed'], style: { head: [], border: [] } });
    for (const e of entries) table.push([e.kind, e.name, mib(e.bytes), e.lastUsed.slice(0, 10), e.rebuilds ? 'rebuilt by tl' : 'downloaded again']);
    io.out(`${root}: ${entries.length} entries, ${mib(total)}\n${entries.length ? `${table.toString()}\n` : ''}\`tl store prune\` removes ONNX graphs unused for ${String(defaultOf(PRUNE_OPTIONS.olderThan))} days (--onnx: all of them; --weights: downloaded weights too).\n`);
  });

  const prune = new Command('prune')
    .description('remove cached ONNX graphs unused for --older-than days (and, with --weights, downloaded weights)');
  addOptions(prune, PRUNE_OPTIONS);
  addCommonOptions(prune, { backend: false });
  prune.action(async (raw: unknown) => {
    const opts = parseOptions(commonSchema.extend(schemaOf(PRUNE_OPTIONS).shape), raw);
    const { storeRoot } = await import('../store/index.js');
    const { pruneStore } = await import('../store/inventory.js');
    const result = await pruneStore(storeRoot(io.env), { olderThanDays: opts.olderThan, allOnnx: opts.onnx, weights: opts.weights, dryRun: opts.dryRun });
    if (opts.json) return printJson(io, result);
    for (const e of result.removed) io.out(`${opts.dryRun ? 'would remove' : 'removed'} ${e.name} (${mib(e.bytes)})\n`);
    io.out(`${opts.dryRun ? 'would free' : 'freed'} ${mib(result.bytes)} in ${result.removed.length} entries\n`);
  });
  cmd.addCommand(prune);
  return cmd;
}
