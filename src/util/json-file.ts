// A JSON file tl reads back (a record it wrote), checked against its schema before it is trusted.
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';

/** Why a JSON file was refused: it does not parse, or it parses but does not fit the schema (the first issue). */
export type JsonFault = { kind: 'syntax' } | { kind: 'schema'; issue: string };

/** The file's data; null when it does not exist; the error `refuse` makes of a fault otherwise. */
export async function readJsonFile<S extends z.ZodType>(path: string, schema: S, refuse: (fault: JsonFault) => Error): Promise<z.output<S> | null> {
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw refuse({ kind: 'syntax' });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw refuse({ kind: 'schema', issue: `${first?.path.join('.') ?? ''}: ${first?.message ?? ''}` });
  }
  return parsed.data;
}
