// The run folder of a fine-tune: checked before any slow work, created exclusively, locked for the run, and swept
// of temp files that a killed run left behind.
import { closeSync, existsSync, openSync, readFileSync, rmdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runFile } from '../data/index.js';
import { EnvironmentError, TlError, UsageError } from '../errors.js';
import { processAlive, sweepStaleTemps, trackTemp, untrackTemp } from '../util/atomic.js';
import { notice } from '../util/notice.js';
import { isInside, realish } from '../util/paths.js';

const LOCK = '.tl.lock';

export interface RunFolder {
  /** The folder in use (with a suffix when the default name was taken). */
  dir: string;
  /** Removes the lock; `discard` also removes the folder if this run created it and wrote nothing into it. */
  release(options?: { discard?: boolean }): void;
}

/** Takes the folder's lock, or says which live process holds it. */
function lock(dir: string): void {
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      trackTemp(path);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(path, 'utf8').trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new TlError('E_RUN_LOCKED', `${dir} is in use by another tl process (pid ${holder}).`, { suggestion: 'Wait for it to finish, or choose another --out.' });
    }
    // Left by a process that no longer runs.
    rmSync(path, { force: true });
  }
  throw new TlError('E_RUN_LOCKED', `Cannot lock ${dir}: another process keeps taking ${join(dir, LOCK)}.`);
}

/**
 * Prepares the run folder before any slow work: refuses a path that is a file or lies inside the dataset, creates
 * the folder (with `unique`, exclusively: `-2`, `-3`, ... when the name is taken, so runs started together never
 * share one), proves it writable by locking it, and removes temp files a killed run left there.
 */
export async function openRunFolder(out: string, options: { data: string; unique: boolean; resume: boolean }): Promise<RunFolder> {
  const info = (() => {
    try {
      return statSync(out);
    } catch {
      return null;
    }
  })();
  if (info !== null && !info.isDirectory()) throw new EnvironmentError(`--out ${out} is a file, not a folder.`, { suggestion: 'Choose a folder name for the run.' });
  if (options.resume && info === null) throw new UsageError(`--resume ${out}: no such run folder.`);
  if (existsSync(options.data) && isInside(realish(options.data), realish(out))) {
    throw new UsageError(`--out ${out} is inside the dataset folder ${options.data}; tl never writes into a dataset.`, { suggestion: 'Choose a run folder outside the dataset.' });
  }
  let dir = out;
  let created = false;
  if (options.unique) {
    await mkdir(dirname(out), { recursive: true });
    for (let n = 1; ; n++) {
      dir = n === 1 ? out : `${out}-${n}`;
      try {
        await mkdir(dir);
        created = true;
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n > 999) throw err;
      }
    }
  } else if (info === null) {
    await mkdir(dir, { recursive: true });
    created = true;
  }
  lock(dir);
  for (const sub of [dir, runFile(dir, 'checkpoints'), runFile(dir, 'model')]) {
    for (const path of sweepStaleTemps(sub)) notice(`removed ${path}, left by an interrupted run`);
  }
  return {
    dir,
    release: ({ discard = false } = {}) => {
      rmSync(join(dir, LOCK), { force: true });
      untrackTemp(join(dir, LOCK));
      if (discard && created) {
        try {
          rmdirSync(dir);
        } catch {
          // Not empty: keep what was written.
        }
      }
    },
  };
}
