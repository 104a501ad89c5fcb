// Atomic file writes: a temp file in the same folder, then rename, so readers never see half a file. Temp files
// are tracked while they live and removed when the process exits (signals included); those a killed process left
// behind carry its pid, so a later run can tell them from a live one's and remove them.
import { randomBytes } from 'node:crypto';
import { constants, readdirSync, rmSync } from 'node:fs';
import { access, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { atPath, EnvironmentError } from '../errors.js';
import { notice } from './notice.js';

const live = new Set<string>();
let exitHookInstalled = false;

/** Remembers a temp path so that it is removed if the process exits before it is renamed or removed. */
export function trackTemp(path: string): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const p of live) rmSync(p, { recursive: true, force: true });
    });
  }
  live.add(path);
}

/** Forgets a temp path that was renamed or removed. */
export function untrackTemp(path: string): void {
  live.delete(path);
}

/** A temp path beside `path` (same folder, so rename is atomic), tracked until untracked. */
export function tempPathFor(path: string): string {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  trackTemp(tmp);
  return tmp;
}

const TEMP_NAME = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/** Whether a process with this pid is running (one we may not signal counts as running). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temp files and folders in `dir` that a process no longer running left behind (killed mid-write);
 * returns their paths. Those of live processes are left alone.
 */
export function sweepStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    const path = join(dir, name);
    try {
      rmSync(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      // Not ours to remove (permissions): leave it.
    }
  }
  return removed;
}

/** Writes `data` (or its chunks, in order) to `path` atomically, creating the folder. */
export async function writeFileAtomic(path: string, data: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw atPath(err, path);
  } finally {
    untrackTemp(tmp);
  }
}

/** Writes a JSON document atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Checks, before any slow work, that `path` can be written: its folder exists and is writable, and it is not itself
 * a folder. Removes temp files that a killed run left beside it.
 */
export async function checkOutputPath(path: string): Promise<void> {
  const folder = dirname(path);
  const info = await stat(folder).catch(() => null);
  if (info === null) throw new EnvironmentError(`Cannot write ${path}: the folder ${folder} does not exist.`, { suggestion: `Create it first (mkdir -p ${folder}), or choose another --out.` });
  if (!info.isDirectory()) throw new EnvironmentError(`Cannot write ${path}: ${folder} is a file, not a folder.`, { suggestion: 'Choose another --out.' });
  if ((await stat(path).catch(() => null))?.isDirectory()) throw new EnvironmentError(`Cannot write ${path}: it is a folder.`, { suggestion: 'Give a file name, e.g. --out features.npy.' });
  try {
    await access(folder, constants.W_OK);
  } catch {
    throw new EnvironmentError(`Cannot write ${path}: the folder ${folder} is not writable (EACCES).`, { suggestion: 'Check its permissions, or choose another --out.' });
  }
  for (const leftover of sweepStaleTemps(folder)) notice(`removed ${leftover}, left by an interrupted run`);
}
