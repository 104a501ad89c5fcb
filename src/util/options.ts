// Options as data: each option's flag, help, type, limits, default and whether `--resume` may change it, written once
// in a table. The command line (flags and their help), config files, a run's saved config.json and the commands' cores
// all read the same table (see src/options/).
import { z } from 'zod';
import { UsageError } from '../errors.js';

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
    z.union([z.literal('auto'), inner], { error: (issue) => `expected "auto" or a ${typeof issue.input === 'number' ? 'whole ' : ''}number, received ${JSON.stringify(issue.input)}` }),
  );
}

/** One option, everything said about it. */
export interface OptionSpec<S extends z.ZodType = z.ZodType> {
  /** The flag as commander takes it: `--batch-size <n>`, `-m, --model <name>`; without `<...>` it is a switch. */
  flag: string;
  /** What it does; its choices and default are added from `schema` where help is shown. */
  help: string;
  /** Its type, limits and default (a default in the schema is the only one). */
  schema: S;
  /** `--resume` may change it; every other option is fixed by the run's config.json. */
  resumable?: boolean;
}

export function option<S extends z.ZodType>(flag: string, help: string, schema: S, extra: { resumable?: boolean } = {}): OptionSpec<S> {
  return { flag, help, schema, ...extra };
}

export type OptionTable = Record<string, OptionSpec>;
export type ShapeOf<T extends OptionTable> = { [K in keyof T]: T[K]['schema'] };

/** The table's options as one zod object (unknown keys are dropped; `.strict()` it to refuse them). */
export function schemaOf<T extends OptionTable>(table: T): z.ZodObject<ShapeOf<T>> {
  return z.object(Object.fromEntries(Object.entries(table).map(([key, spec]) => [key, spec.schema])) as ShapeOf<T>);
}

/** The value an option takes when it is not given (undefined where it has no default). */
export function defaultOf(spec: OptionSpec): unknown {
  const parsed = spec.schema.safeParse(undefined);
  return parsed.success ? parsed.data : undefined;
}

/** The values an option of an enum type takes (none for other types). */
export function choicesOf(spec: OptionSpec): readonly string[] {
  let s: z.ZodType = spec.schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodEnum) return s.options.map(String);
    else return [];
  }
}

/** The long flag (`--batch-size`) of an option. */
export function longFlag(spec: OptionSpec): string {
  const match = /--[a-z][\w-]*/.exec(spec.flag);
  if (!match) throw new Error(`option flag without a long form: ${spec.flag}`);
  return match[0];
}

/** `batchSize` -> `--batch-size`, for messages about a key. */
export function flagOfKey(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Parses with a schema; the first problem is a usage error naming the option (`--batch-size`) and what was wrong. */
export function parseOptions<S extends z.ZodType>(schema: S, raw: unknown, where = ''): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = issue?.path.length ? flagOfKey(issue.path.map(String).join('.')) : 'options';
  throw new UsageError(`Invalid ${key}${where}: ${issue?.message ?? 'invalid value'}`);
}
