import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { spawnTl } from '../helpers/cli.js';

describe('tl CLI (in-process)', () => {
  it('--help lists every command', async () => {
    const r = await runCli(['--help']);
    expect(r.exitCode).toBe(0);
    for (const name of ['doctor']) expect(r.stdout).toContain(name);
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

describe('tl CLI (spawned bin/tl.js)', () => {
  it('--version prints the package version', async () => {
    const r = await spawnTl(['--version']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('doctor --json keeps stdout pure JSON and honours TL_BACKEND', async () => {
    const r = await spawnTl(['doctor', '--json'], { TL_BACKEND: 'cpu', TL_HOME: '/tmp/tl-doctor-test' });
    expect(r.exitCode).toBe(0);
    const report = JSON.parse(r.stdout) as { store: { path: string }; active: { name: string } };
    expect(report.store.path).toBe('/tmp/tl-doctor-test');
    expect(report.active.name).toBe('cpu');
    expect(r.stderr).toBe('');
  });
});
