// Options and helpers every command shares: --backend, --json, --quiet, zod validation.
import { Option, type Command } from 'commander';
import { z } from 'zod';
import type { BackendInfo } from '../backend/index.js';
import { BACKEND_NAMES } from '../backend/names.js';
import { UsageError } from '../errors.js';
import type { Io } from './io.js';

export const backendSchema = z.enum(['auto', ...BACKEND_NAMES]);

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A number given as a number or a decimal string ("16", "1e-3"); anything else ("0x10", "", "two") is refused with
 * what was received, where `z.coerce` would read hex, blanks as 0 and words as NaN.
 */
export function numeric<T extends z.ZodNumber>(inner: T) {
  return z.preprocess(
    (v) => (typeof v === 'string' && DECIMAL.test(v.trim()) ? Number(v) : v),
    z.number({ error: (issue) => (issue.code === 'invalid_type' ? `expected a number, received ${JSON.stringify(issue.input)}` : undefined) }).pipe(inner),
  );
}

/** `auto` or a number (as `numeric`); anything else says what was received. */
export function numericOrAuto<T extends z.ZodNumber>(inner: T) {
  return z.preprocess(
    (v) => (v === 'auto' ? v : typeof v === 'string' && DECIMAL.test(v.trim()) ? Number(v) : v),
    z.union([z.literal('auto'), inner], { error: (issue) => `expected "auto" or a ${typeof issue.input === "number" ? "whole " : ""}number, received ${JSON.stringify(issue.input)}` }),
  );
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

/** Validates commander's option bag with a zod schema; failures are usage errors (exit 2). */
export function parseOptions<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `--${issue.path.map(String).join('.').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : 'options';
  throw new UsageError(`Invalid ${where}: ${issue?.message ?? 'invalid value'}`);
}

/** The one line every computing command prints first (on stderr, so stdout stays parseable). */
export function announceBackend(io: Io, info: BackendInfo, opts: { quiet?: boolean }, engine?: { label: string; name?: string }, training = false): void {
  if (opts.quiet) return;
  const what = training && engine?.name === 'onnx' ? 'inference and training engine' : 'inference engine';
  io.err(`backend: ${info.label}${engine ? `; ${what}: ${engine.label}` : ''}\n`);
}

/** Adds --engine (ONNX Runtime or TensorFlow.js) and --device (where ONNX Runtime runs). */
export function addEngineOption(cmd: Command, what: string): Command {
  cmd.addOption(new Option('--engine <name>', `engine for ${what}: auto (ONNX Runtime when it loads) | onnx | tfjs`).choices(['auto', 'onnx', 'tfjs']).default('auto'));
  return cmd.addOption(new Option('--device <name>', 'where ONNX Runtime runs: auto (CUDA when its provider and a driver load, else cpu) | cpu | cuda | webgpu').choices(['auto', 'cpu', 'cuda', 'webgpu']).default('auto'));
}

export const engineSchema = z.enum(['auto', 'onnx', 'tfjs']);
export const deviceSchema = z.enum(['auto', 'cpu', 'cuda', 'webgpu']);

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
