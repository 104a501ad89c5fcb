// Checkpoints: named float32 tensors plus a JSON state in one file, written atomically (temp file, rename).
import { readFile } from 'node:fs/promises';
import { TlError } from '../errors.js';
import type { NamedArray } from '../step/index.js';
import { writeFileAtomic } from '../util/atomic.js';

const MAGIC = 'TLCKPT01';

interface Header<S> {
  state: S;
  groups: Record<string, { name: string; shape: number[]; dtype: 'float32' | 'int32' }[]>;
}

/** Writes `state` and groups of arrays to `path` atomically. */
export async function writeCheckpoint<S>(path: string, state: S, groups: Record<string, NamedArray[]>): Promise<void> {
  const header: Header<S> = { state, groups: Object.fromEntries(Object.entries(groups).map(([k, list]) => [k, list.map(({ name, shape, dtype }) => ({ name, shape, dtype }))])) };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerBytes = 8 + 4 + json.length;
  const pad = (4 - (headerBytes % 4)) % 4;
  const head = Buffer.alloc(headerBytes + pad);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  json.copy(head, 12);
  // Written array by array: a checkpoint of ResNet50's conv5 and its Adam slots is 180 MB, not assembled in memory.
  await writeFileAtomic(path, [head, ...Object.values(groups).flat().map((a) => new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength))]);
}

/** Reads a checkpoint written by `writeCheckpoint`; a damaged or foreign file is a clear error naming it. */
export async function readCheckpoint<S>(path: string): Promise<{ state: S; groups: Record<string, NamedArray[]> }> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new TlError('E_CHECKPOINT', `Cannot read checkpoint ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`, { cause: err });
  }
  const bad = (why: string) => new TlError('E_CHECKPOINT', `${path} is not a usable tl checkpoint: ${why}.`);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw bad('wrong magic bytes');
  const length = buf.readUInt32LE(8);
  if (12 + length > buf.length) throw bad('truncated header');
  let header: Header<S>;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + length)) as Header<S>;
  } catch {
    throw bad('unreadable header');
  }
  let at = 12 + length;
  at += (4 - (at % 4)) % 4;
  const groups: Record<string, NamedArray[]> = {};
  for (const [key, specs] of Object.entries(header.groups)) {
    groups[key] = specs.map((s) => {
      const count = s.shape.reduce((a, b) => a * b, 1);
      if (at + count * 4 > buf.length) throw bad(`truncated data at '${s.name}'`);
      const bytes = buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + count * 4);
      at += count * 4;
      return { ...s, data: s.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes) };
    });
  }
  if (at !== buf.length) throw bad(`${buf.length - at} unexpected trailing bytes`);
  return { state: header.state, groups };
}
