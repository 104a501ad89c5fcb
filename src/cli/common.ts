// Options and helpers every command shares: --backend, --json, --quiet, zod validation.
import { Option, type Command } from 'commander';
import { z } from 'zod';
import type { BackendInfo } from '../backend/index.js';
import { BACKEND_NAMES } from '../backend/names.js';
import { choicesOf, defaultOf, type OptionSpec, type OptionTable } from '../util/options.js';
import type { Io } from './io.js';

export const backendSchema = z.enum(['auto', ...BACKEND_NAMES]);

export { numeric, numericOrAuto, parseOptions } from '../util/options.js';

/**
 * `--resize` as the command line gave it, or undefined where it was left out: then a command that reads a model tl
 * trained (extract, rank) uses the mode the model records, and DEFAULT_RESIZE otherwise.
 */
export function resizeIfGiven<T>(raw: unknown, parsed: T): { resize: T } | Record<string, never> {
  return (raw as { resize?: unknown }).resize !== undefined ? { resize: parsed } : {};
}

/** Adds a table's options as flags, with help that states each one's choices and default from its schema. */
export function addOptions(cmd: Command, table: OptionTable): Command {
  for (const spec of Object.values(table)) cmd.option(spec.flag, helpOf(spec));
  return cmd;
}

/** An option's help: what it does, its choices where the text does not name them all, its default. */
export function helpOf(spec: OptionSpec): string {
  const choices = choicesOf(spec);
  const parts = [choices.length > 0 && !choices.every((c) => new RegExp(`(^|[ (:|])${c}([ ),;|]|$)`).test(spec.help)) ? choices.join(' | ') : '', ''];
  const value = defaultOf(spec);
  // A `--no-x` switch is on unless given: its default goes without saying.
  if (value !== undefined && value !== false && !spec.flag.startsWith('--no-')) parts[1] = `default: ${String(value)}`;
  const extra = parts.filter(Boolean).join('; ');
  return extra ? `${spec.help} (${extra})` : spec.help;
}

export const commonSchema = z.object({
  json: z.boolean().default(false),
  quiet: z.boolean().default(false),
});

/** Adds --json and --quiet, and --backend when the command computes. */
export function addCommonOptions(cmd: Command, opts: { backend: boolean }): Command {
  if (opts.backend) {
    cmd.addOption(
      new Option('--backend <name>', 'compute backend (default: $TL_BACKEND or auto)').choices(['auto', ...BACKEND_NAMES]),
    );
  }
  cmd.option('--json', 'print one JSON document on stdout and nothing else there');
  cmd.option('-q, --quiet', 'print only results and errors');
  return cmd;
}

/** The one line every computing command prints first (on stderr, so stdout stays parseable). */
export function announceBackend(io: Io, info: BackendInfo, opts: { quiet?: boolean }, engine?: { label: string; name?: string }, training = false): void {
  if (opts.quiet) return;
  const what = training && engine?.name === 'onnx' ? 'inference and training engine' : 'inference engine';
  io.err(`backend: ${info.label}${engine ? `; ${what}: ${engine.label}` : ''}\n`);
}

/** Writes a JSON document as the whole of stdout. */
export function printJson(io: Io, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** Human-readable byte count. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
