// Typed errors with stable codes; only the CLI entry turns them into messages and exit codes.

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
