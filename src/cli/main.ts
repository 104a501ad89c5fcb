// The CLI entry: builds the command tree, runs it, and turns errors into messages and exit codes.
import { Command, CommanderError } from 'commander';
import { environmentError, TlError } from '../errors.js';
import { onNotice } from '../util/notice.js';
import { TL_VERSION } from '../version.js';
import { dataCommand } from './data.js';
import { doctorCommand } from './doctor.js';
import { evalCommand } from './eval.js';
import { exportCommand } from './export.js';
import { extractCommand, mergeCommand } from './extract.js';
import { rankCommand } from './rank.js';
import { slurmCommand } from './slurm.js';
import { cacheCommand } from './cache.js';
import { finetuneCommand } from './finetune.js';
import { modelsCommand } from './models.js';
import { predictCommand } from './predict.js';
import { serveCommand } from './serve.js';
import { storeCommand } from './store.js';
import { bufferIo, processIo, type Io } from './io.js';

/** Builds the `tl` program writing through `io`. */
export function buildProgram(io: Io): Command {
  const program = new Command('tl')
    .description('Transfer learning on pretrained vision models: fine-tune, choose the backbone, freeze depth and learning rate, extract features, evaluate, predict, and shard the passes over images across a job array.')
    .version(TL_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  for (const cmd of [finetuneCommand(io), finetuneCommand(io, 'lr-find'), finetuneCommand(io, 'curve'), extractCommand(io), cacheCommand(io), mergeCommand(io), slurmCommand(io), rankCommand(io), evalCommand(io), predictCommand(io), exportCommand(io), serveCommand(io), modelsCommand(io), storeCommand(io), dataCommand(io), doctorCommand(io)]) {
    program.addCommand(cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) }));
  }
  return program;
}

/** Runs tl with `argv` (without node and script) and returns its exit code. */
export async function execute(argv: string[], io: Io): Promise<number> {
  const program = buildProgram(io);
  const quiet = argv.includes('-q') || argv.includes('--quiet');
  const stopNotices = onNotice((text) => {
    if (!quiet) io.err(`notice: ${text}\n`);
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    return handleError(err, io, { json: argv.includes('--json') });
  } finally {
    stopNotices();
  }
}

/** What a failed command prints on stdout with --json: one document a script can parse instead of nothing. */
export interface JsonErrorDocument {
  error: { code: string; message: string; suggestion: string | null; exitCode: number };
}

/**
 * Known errors: one line and a suggestion. Unknown ones: the stack and a request to report it. With `json`, stdout
 * also gets one JSON error document (stderr keeps the human-readable lines).
 */
export function handleError(err: unknown, io: Io, options: { json?: boolean } = {}): number {
  const document = (code: string, message: string, suggestion: string | null, exitCode: number) => {
    if (options.json && !io.wroteOut?.()) io.out(`${JSON.stringify({ error: { code, message, suggestion, exitCode } } satisfies JsonErrorDocument, null, 2)}\n`);
    return exitCode;
  };
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
    return document('E_USAGE', err.message.replace(/^error: /, ''), 'run with --help for usage', 2);
  }
  const known = err instanceof TlError ? err : environmentError(err);
  if (known) {
    io.err(`error: ${known.message}\n`);
    if (known.suggestion) io.err(`  ${known.suggestion}\n`);
    return document(known.code, known.message, known.suggestion ?? null, known.exitCode);
  }
  const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
  io.err(`internal error: ${stack}\nThis is a bug in tl; please report it with the command you ran and the output of \`tl doctor\`.\n`);
  return document('E_INTERNAL', err instanceof Error ? err.message : String(err), 'please report it with the command you ran and the output of `tl doctor`', 1);
}

/** In-process run for tests: exit code and everything written. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const io = bufferIo(env);
  const exitCode = await execute(argv, io);
  return { exitCode, stdout: io.stdout(), stderr: io.stderr() };
}

/** Entry used by bin/tl.js. */
export async function main(argv: string[]): Promise<number> {
  // Without a command's own handler, a signal ends the process through process.exit, so exit hooks (which remove
  // temp files) run; a command that handles signals itself (finetune) adds a second listener and this one yields.
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => {
      if (process.listenerCount(signal) === 1) process.exit(code);
    });
  }
  return execute(argv, processIo());
}
