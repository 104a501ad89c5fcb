import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { runTl } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/** The commands README documents, each with its line in `tl --help`. */
const COMMANDS = ['finetune', 'lr-find', 'curve', 'extract', 'cache', 'merge', 'slurm', 'rank', 'eval', 'predict', 'export', 'serve', 'models', 'store', 'data', 'doctor'];

describe('tl CLI (in-process)', () => {
  it('--help lists every command', async () => {
    const r = await runCli(['--help']);
    expect(r.exitCode).toBe(0);
    const listed = [...r.stdout.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
    expect(listed.sort()).toEqual([...COMMANDS].sort());
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const name of COMMANDS) expect(readme, `README names tl ${name}`).toContain(`tl ${name}`);
  });

  it('an unknown option is a usage error with exit 2', async () => {
    const r = await runCli(['doctor', '--bogus']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("unknown option '--bogus'");
  });

  it('doctor --json is one JSON document naming the active backend and why tensorflow is absent', async () => {
    const r = await runCli(['doctor', '--json']);
    expect(r.exitCode).toBe(0);
    const report = JSON.parse(r.stdout) as { active: { name: string }; backends: { backend: string; ok: boolean; reason?: string }[]; gpu: { usable: boolean; reason: string } };
    expect(['tensorflow', 'wasm', 'cpu']).toContain(report.active.name);
    const tensorflow = report.backends.filter((b) => b.backend === 'tensorflow');
    expect(tensorflow.length).toBeGreaterThan(0);
    if (report.active.name !== 'tensorflow') {
      for (const b of tensorflow) expect(b.reason).toMatch(/tfjs-node/);
    }
    if (!report.gpu.usable) expect(report.gpu.reason).toMatch(/driver|libcudart|libcudnn/);
  });
});

describe('tl CLI, version and environment', () => {
  it('--version prints the package version', async () => {
    const r = await runTl(['--version']);
    expect(r.exitCode).toBe(0);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('doctor --json keeps stdout pure JSON and honours TL_BACKEND', async () => {
    const home = tempDir();
    const r = await runTl(['doctor', '--json'], { TL_BACKEND: 'cpu', TL_HOME: home });
    expect(r.exitCode).toBe(0);
    const report = JSON.parse(r.stdout) as { store: { path: string }; active: { name: string } };
    expect(report.store.path).toBe(home);
    expect(report.active.name).toBe('cpu');
    expect(r.stderr).toBe('');
  });
});
