// Files in the model store carry a recorded digest, checked before tl trusts them: a `.sha256` sidecar for what tl
// made or downloaded without a published hash, the published md5/sha256 otherwise. A file is hashed once per
// process (again only if its size, mtime or inode change).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { WeightsError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';

export type StoreCheck = 'ok' | 'missing' | 'unrecorded' | 'mismatch';

/** Why a check failed, in words for a message. */
export const CHECK_WORDS: Record<Exclude<StoreCheck, 'ok'>, string> = {
  missing: 'missing',
  unrecorded: 'has no recorded hash',
  mismatch: 'does not match its recorded hash (damaged or changed)',
};

/** The sidecar holding a file's recorded sha256. */
export const sidecar = (path: string) => `${path}.sha256`;

export function hashAlgorithm(hash: string): 'md5' | 'sha256' {
  if (/^[0-9a-f]{32}$/i.test(hash)) return 'md5';
  if (/^[0-9a-f]{64}$/i.test(hash)) return 'sha256';
  throw new WeightsError(`'${hash}' is neither an md5 nor a sha256 hex digest.`);
}

/** Streams a file through a hash. */
export function hashFile(path: string, algo: 'md5' | 'sha256'): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash(algo);
    createReadStream(path).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}

const verified = new Map<string, string>();
const identity = (s: { size: number; mtimeMs: number; ino: number }) => `${s.size}:${s.mtimeMs}:${s.ino}`;

/** Checks `path` against `expected` (md5 or sha256 hex), or against its sidecar when `expected` is null. */
export async function checkStored(path: string, expected: string | null = null): Promise<StoreCheck> {
  const info = await stat(path).catch(() => null);
  if (info === null || !info.isFile()) return 'missing';
  let want = expected?.toLowerCase() ?? null;
  if (want === null) {
    const recorded = await readFile(sidecar(path), 'utf8').catch(() => null);
    want = recorded?.trim().toLowerCase() ?? null;
    if (want === null || !/^[0-9a-f]{64}$/.test(want)) return 'unrecorded';
  }
  const key = `${path}\0${want}`;
  if (verified.get(key) === identity(info)) return 'ok';
  const got = await hashFile(path, hashAlgorithm(want));
  if (got !== want) return 'mismatch';
  verified.set(key, identity(info));
  return 'ok';
}

/** Reads a store file whose content matches its sidecar, or null (with the reason) when it does not. */
export async function readStored(path: string): Promise<{ data: Buffer; check: 'ok' } | { data: null; check: Exclude<StoreCheck, 'ok'> }> {
  const data = await readFile(path).catch(() => null);
  if (data === null) return { data: null, check: 'missing' };
  const recorded = (await readFile(sidecar(path), 'utf8').catch(() => null))?.trim().toLowerCase();
  if (!recorded || !/^[0-9a-f]{64}$/.test(recorded)) return { data: null, check: 'unrecorded' };
  return createHash('sha256').update(data).digest('hex') === recorded ? { data, check: 'ok' } : { data: null, check: 'mismatch' };
}

/** Records the sha256 of bytes just written to `path`. */
export async function recordStored(path: string, sha256: string): Promise<void> {
  await writeFileAtomic(sidecar(path), `${sha256}\n`);
}

/** Writes `data` into the store atomically, then its sidecar (a file without one is never trusted). */
export async function writeStored(path: string, data: Uint8Array): Promise<void> {
  await writeFileAtomic(path, data);
  await recordStored(path, createHash('sha256').update(data).digest('hex'));
}
