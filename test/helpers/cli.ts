// Runs tl: in this process (`runTl`, what most tests need), or the built bin/tl.js as a child process (`spawnTl`, for
// what only a process shows: signals, exit codes of a real exit, hangs, the environment it starts with).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';

/** Runs tl in this process with `env` added to this process's environment; stdout and stderr are buffered. */
export function runTl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return runCli(args, { ...process.env, ...env });
}

export const BIN = fileURLToPath(new URL('../../bin/tl.js', import.meta.url));

/** Runs tl; with `timeoutMs`, a process still running then is killed and reported with `timedOut`. */
export function spawnTl(args: string[], env: NodeJS.ProcessEnv = {}, options: { timeoutMs?: number } = {}): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr, timedOut });
    });
  });
}
