// Where a command's output goes: stdout for results, stderr for progress and diagnostics.
import ora, { type Ora } from 'ora';

/** Streams and terminal facts a command writes through; runCli swaps them for buffers. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Progress may be animated (stderr is a terminal). */
  isTTY: boolean;
  color: boolean;
  env: NodeJS.ProcessEnv;
  errStream?: NodeJS.WritableStream;
  /** Whether anything was written to stdout (a --json command that printed its result prints no error document). */
  wroteOut?: () => boolean;
}

/** A progress indicator that is a real spinner on a terminal and silent elsewhere. */
export interface Progress {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  stop(): void;
  /** A line that stays on screen above the spinner (e.g. a finished epoch). */
  log(text: string): void;
}

const silent: Progress = { update() {}, succeed() {}, fail() {}, stop() {}, log() {} };

/** Starts a spinner on stderr when it is a terminal and output is neither JSON nor quiet. */
export function progress(io: Io, text: string, opts: { json?: boolean; quiet?: boolean }): Progress {
  if (!io.isTTY || opts.json || opts.quiet || io.errStream === undefined) return silent;
  const spinner: Ora = ora({ text, stream: io.errStream, color: io.color ? 'cyan' : false, isEnabled: true }).start();
  return {
    update: (t) => void (spinner.text = t),
    succeed: (t) => void spinner.succeed(t),
    fail: (t) => void spinner.fail(t),
    stop: () => void spinner.stop(),
    log: (t) => {
      spinner.clear();
      io.errStream!.write(t.endsWith('\n') ? t : `${t}\n`);
      spinner.render();
    },
  };
}

/** Download progress: on the spinner on a terminal, otherwise a line on stderr at every quarter. */
export function downloadReporter(io: Io, spinner: Progress, opts: { json?: boolean; quiet?: boolean }): (p: { url: string; bytes: number; total: number | null; bytesPerSecond: number }) => void {
  const reported = new Map<string, number>();
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return (p) => {
    const text = `downloading ${p.url} ${mib(p.bytes)}${p.total ? ` of ${mib(p.total)}` : ''} at ${mib(p.bytesPerSecond)}/s`;
    spinner.update(text);
    if (io.isTTY || opts.json || opts.quiet) return;
    const quarter = p.total ? Math.floor((4 * p.bytes) / p.total) : 0;
    if ((reported.get(p.url) ?? -1) < quarter) {
      reported.set(p.url, quarter);
      io.err(`${text}\n`);
    }
  };
}

/** The real process streams. */
export function processIo(): Io {
  const env = process.env;
  const isTTY = process.stderr.isTTY === true;
  let wrote = false;
  return {
    out: (t) => void ((wrote = true), process.stdout.write(t)),
    wroteOut: () => wrote,
    err: (t) => void process.stderr.write(t),
    isTTY,
    color: isTTY && env['NO_COLOR'] === undefined && env['TERM'] !== 'dumb',
    env,
    errStream: process.stderr,
  };
}

/** Buffers for in-process runs (tests). */
export function bufferIo(env: NodeJS.ProcessEnv = process.env): Io & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => void (out += t),
    wroteOut: () => out.length > 0,
    err: (t) => void (err += t),
    isTTY: false,
    color: false,
    env,
    stdout: () => out,
    stderr: () => err,
  };
}
