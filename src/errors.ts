// Typed errors with stable codes; only the CLI entry turns them into messages and exit codes.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Base error of tl: a stable machine-readable code and an optional suggestion for the user. */
export class TlError extends Error {
  readonly code: string;
  readonly suggestion: string | undefined;
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;

  constructor(code: string, message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.suggestion = options.suggestion;
  }
}

/** Bad command-line usage or options (exit 2). */
export class UsageError extends TlError {
  override readonly exitCode = 2;
  constructor(message: string, options: { suggestion?: string } = {}) {
    super('E_USAGE', message, options);
  }
}

/** A model name or path that tl cannot resolve. */
export class ModelNotFoundError extends TlError {
  constructor(message: string, options: { suggestion?: string } = {}) {
    super('E_MODEL_NOT_FOUND', message, options);
  }
}

/** Weights that are missing, malformed, or fail their hash check. */
export class WeightsError extends TlError {
  constructor(message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super('E_WEIGHTS', message, options);
  }
}

/** A dataset folder that cannot be used. */
export class DatasetError extends TlError {
  constructor(message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super('E_DATASET', message, options);
  }
}

/** A compute backend that cannot be loaded or cannot run an operation. */
export class BackendError extends TlError {
  constructor(message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super('E_BACKEND', message, options);
  }
}

/** A run interrupted by a signal; the exit code follows the shell convention (128 + signal). */
export class InterruptedError extends TlError {
  override readonly exitCode: number;
  constructor(signal: 'SIGINT' | 'SIGTERM', message: string) {
    super('E_INTERRUPTED', message);
    this.exitCode = signal === 'SIGINT' ? 130 : 143;
  }
}

/** Short text of any thrown value, for messages and reports. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** An environmental failure (disk full, permission, a path of the wrong kind) met while reading or writing a path. */
export class EnvironmentError extends TlError {
  constructor(message: string, options: { suggestion?: string; cause?: unknown } = {}) {
    super('E_ENVIRONMENT', message, options);
  }
}

const ENVIRONMENT: Record<string, { what: string; suggestion: string }> = {
  ENOSPC: { what: 'no space left on the device', suggestion: 'Free some disk space, or write elsewhere (--out, or TL_HOME for the model store).' },
  EDQUOT: { what: 'disk quota exceeded', suggestion: 'Free some space in your quota, or write elsewhere (--out, or TL_HOME for the model store).' },
  EACCES: { what: 'permission denied', suggestion: 'Check the permissions of that path, or write elsewhere (--out, or TL_HOME for the model store).' },
  EPERM: { what: 'operation not permitted', suggestion: 'Check the permissions of that path, or write elsewhere (--out, or TL_HOME for the model store).' },
  EROFS: { what: 'read-only file system', suggestion: 'Write elsewhere (--out, or TL_HOME for the model store).' },
  ENOENT: { what: 'no such file or folder', suggestion: 'Check the path; create the folder first if it should exist.' },
  ENOTDIR: { what: 'a part of the path is a file, not a folder', suggestion: 'Choose a path whose folders are folders.' },
  EISDIR: { what: 'it is a folder, not a file', suggestion: 'Give a file name.' },
  EEXIST: { what: 'it already exists', suggestion: 'Remove it or choose another path.' },
  ENOTEMPTY: { what: 'the folder is not empty', suggestion: 'Remove it or choose another path.' },
  EMFILE: { what: 'too many open files', suggestion: 'Raise the limit (ulimit -n) and run again.' },
  ENAMETOOLONG: { what: 'the path is too long', suggestion: 'Choose a shorter path.' },
};

/** Names `path` on a system error that came without one (a failed write(2) names no file), and returns it. */
export function atPath<E>(err: E, path: string): E {
  const sys = err as NodeJS.ErrnoException;
  if (sys instanceof Error && typeof sys.code === 'string' && sys.path === undefined) sys.path = path;
  return err;
}

/**
 * Why a folder could not be made, from what is on the way to it: the part of the path that is a file, or the nearest
 * existing folder that cannot be written (a recursive mkdir reports ENOENT or ENOTDIR for both).
 */
function mkdirBlocker(path: string): EnvironmentError | null {
  let at = resolve(path);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  let info;
  try {
    info = statSync(at);
  } catch {
    return null;
  }
  if (!info.isDirectory()) return new EnvironmentError(`Cannot write ${path}: ${at} is a file, not a folder.`, { suggestion: 'Move the file away, or choose another path (--out, or TL_HOME for the model store).' });
  try {
    accessSync(at, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
    return new EnvironmentError(`Cannot write ${path}: ${at} is ${code === 'EROFS' ? 'on a read-only file system' : 'not writable'} (${code}).`, { suggestion: ENVIRONMENT[code]?.suggestion ?? ENVIRONMENT['EACCES']!.suggestion });
  }
  return null;
}

/** The environmental failure inside `err` (or its causes) as a one-line error naming the path, or null. */
export function environmentError(err: unknown): EnvironmentError | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const sys = e as NodeJS.ErrnoException & { dest?: string };
    if (sys.syscall === 'mkdir' && (sys.code === 'ENOENT' || sys.code === 'ENOTDIR') && sys.path !== undefined) {
      const blocker = mkdirBlocker(sys.path);
      if (blocker) return blocker;
    }
    const blocked = (sys.code === 'EEXIST' || sys.code === 'ENOTDIR') && sys.syscall === 'mkdir';
    const known = blocked ? { what: 'a file is in the way of that folder', suggestion: 'Move the file away, or choose another path.' } : sys.code ? ENVIRONMENT[sys.code] : undefined;
    if (!known || (sys.path === undefined && sys.dest === undefined)) continue;
    const verb = sys.syscall === 'open' ? 'open' : sys.syscall === 'write' || sys.syscall === 'mkdir' || sys.syscall === 'rename' || sys.syscall === 'copyfile' ? 'write' : sys.syscall === 'read' || sys.syscall === 'scandir' || sys.syscall === 'stat' ? 'read' : 'use';
    const target = sys.dest && sys.syscall === 'rename' ? sys.dest : sys.path;
    return new EnvironmentError(`Cannot ${verb} ${target}: ${known.what} (${sys.code}).`, { suggestion: known.suggestion, cause: err });
  }
  // A system error that names no path (a failed write(2)) is still the environment's, not a bug: said without one.
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const sys = e as NodeJS.ErrnoException;
    const known = sys.code ? ENVIRONMENT[sys.code] : undefined;
    if (known && sys.code !== 'ENOENT') return new EnvironmentError(`A file operation${sys.syscall ? ` (${sys.syscall})` : ''} failed: ${known.what} (${sys.code}).`, { suggestion: known.suggestion, cause: err });
  }
  return null;
}
