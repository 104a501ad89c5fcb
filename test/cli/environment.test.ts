// Environmental failures and run folders: one-line errors, no hangs, no collisions, no leftovers.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { atPath, environmentError, TlError } from '../../src/errors.js';
import { openRunFolder } from '../../src/train/run-folder.js';
import { onNotice } from '../../src/util/notice.js';
import { BIN, runTl, spawnTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
});

const quick = ['--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--epochs', '1', '--val', '0', '--test', '0'];

describe('environmental failures are one-line errors', () => {
  it('a real ENOSPC and EACCES name the path and what to do', () => {
    let enospc: unknown;
    try {
      writeFileSync('/dev/full', 'x');
    } catch (err) {
      enospc = err;
    }
    // write(2) names no file: tl names the one it was writing, and without one still says what failed.
    expect(environmentError(enospc)?.message).toBe('A file operation (write) failed: no space left on the device (ENOSPC).');
    const e = environmentError(new Error('wrapped', { cause: atPath(enospc, '/dev/full') }));
    expect(e?.message).toBe('Cannot write /dev/full: no space left on the device (ENOSPC).');
    expect(e?.suggestion).toMatch(/Free some disk space/);
    const eacces = Object.assign(new Error("EACCES: permission denied, open '/x/y'"), { code: 'EACCES', syscall: 'open', path: '/x/y' });
    expect(environmentError(eacces)?.message).toBe('Cannot open /x/y: permission denied (EACCES).');
    expect(environmentError(new Error('plain'))).toBeNull();
  });

  it('a full disk under --out or the model store is a one-line error (real small tmpfs mounts; root only)', async (ctx) => {
    // One tmpfs per case: what one failed run removes must not make room for the next.
    const mounts: string[] = [];
    const fullDisk = (size = '256k') => {
      const mnt = tempDir();
      if (spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]).status !== 0) return null;
      mounts.push(mnt);
      return mnt;
    };
    if (fullDisk() === null) return ctx.skip('cannot mount a tmpfs here (needs root)');
    try {
      const home = tempDir();
      const out = join(mounts[0]!, 'run');
      const r = await runTl(['finetune', data, ...quick, '--workers', '1', '--engine', 'tfjs', '--out', out], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: Cannot write ${out}/\\S+: no space left on the device \\(ENOSPC\\)\\.$`, 'm'));
      expect(r.stderr).not.toMatch(/internal error/);
      // Smaller than the frozen part's ONNX graph (about 0.1 MiB).
      const full = join(fullDisk('32k')!, 'store');
      const s = await runTl(['finetune', data, ...quick, '--workers', '2', '--engine', 'onnx', '--freeze', '100', '--out', join(tempDir(), 'run')], { TL_HOME: full });
      expect(s.exitCode, s.stderr).toBe(1);
      expect(s.stderr).toMatch(new RegExp(`^error: Cannot write ${full}/onnx/\\S+: no space left on the device \\(ENOSPC\\)\\.$`, 'm'));
      expect(readdirSync(join(full, 'onnx')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      // The first extraction of the bundled nsfwjs weights into a full store.
      const nsfw = join(fullDisk()!, 'nsfw');
      const n = await runTl(['finetune', data, '--model', 'mobilenet_v2.nsfwjs', '--input-size', '32', '--epochs', '1', '--out', join(tempDir(), 'run')], { TL_HOME: nsfw });
      expect(n.exitCode, n.stderr).toBe(1);
      expect(n.stderr).toMatch(new RegExp(`^error: Cannot write ${nsfw}/\\S+: no space left on the device \\(ENOSPC\\)\\.$`, 'm'));
      expect(n.stderr).not.toMatch(/internal error/);
    } finally {
      for (const mnt of mounts) spawnSync('umount', [mnt]);
    }
  }, 120_000);

  it('a model store on a read-only file system, or a TL_HOME that is a file, is named as such; a dataset that is a symlink loop too', async (ctx) => {
    const file = join(tempDir(), 'home-file');
    writeFileSync(file, 'x');
    const f = await runTl(['finetune', data, ...quick, '--out', join(tempDir(), 'run')], { TL_HOME: file });
    expect(f.exitCode).toBe(1);
    expect(f.stderr).toMatch(new RegExp(`^error: Cannot write ${file}/\\S+: ${file} is a file, not a folder\\.$`, 'm'));
    const loop = join(tempDir(), 'loop');
    symlinkSync(`${loop}-2`, loop);
    symlinkSync(loop, `${loop}-2`);
    const l = await runTl(['data', loop], { TL_HOME: tempDir() });
    expect(l.exitCode).toBe(1);
    expect(l.stderr).toContain(`error: Dataset path ${loop} is a symlink loop.`);
    const mnt = tempDir();
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', mnt]).status !== 0) return ctx.skip('cannot mount a read-only tmpfs here (needs root)');
    try {
      const r = await runTl(['finetune', data, ...quick, '--out', join(tempDir(), 'run')], { TL_HOME: join(mnt, 'store') });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`error: Cannot write ${join(mnt, 'store')}: ${mnt} is on a read-only file system (EROFS).`);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('an ONNX Runtime failure with worker replicas running ends the process with one line, not a hang', async () => {
    // The store's onnx folder is a file: the frozen part's export fails after the replicas have started.
    const home = tempDir();
    writeFileSync(join(home, 'onnx'), 'not a folder');
    const r = await spawnTl(['finetune', data, ...quick, '--workers', '2', '--engine', 'onnx', '--out', join(tempDir(), 'run')], { TL_HOME: home }, { timeoutMs: 90_000 });
    expect(r.timedOut, 'tl finetune did not exit within 90 s').toBe(false);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toContain(`error: Cannot write ${join(home, 'onnx')}: a file is in the way of that folder (EEXIST).`);
    expect(r.stderr).not.toMatch(/internal error/);
  }, 120_000);

  it('--out naming a file, or a folder inside the dataset, is refused before any work', async () => {
    const file = join(tempDir(), 'taken');
    writeFileSync(file, 'x');
    const a = await runTl(['finetune', data, ...quick, '--out', file], { TL_HOME: tempDir() });
    expect(a.exitCode).toBe(1);
    expect(a.stderr).toContain(`error: --out ${file} is a file, not a folder.`);
    const inside = join(data, 'runs', 'r1');
    const b = await runTl(['finetune', data, ...quick, '--out', inside], { TL_HOME: tempDir() });
    expect(b.exitCode).toBe(2);
    expect(b.stderr).toContain(`error: --out ${inside} is inside the dataset folder ${data}`);
    expect(existsSync(join(data, 'runs'))).toBe(false);
  });

  it('Ctrl-C during a download removes its temp file and exits 130', async () => {
    const { createServer } = await import('node:http');
    // model.json, then a shard that sends a little and stalls.
    const server = createServer((req, res) => {
      if (req.url === '/m/model.json') return void res.writeHead(200).end(JSON.stringify({ format: 'layers-model', modelTopology: {}, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'k', shape: [1000000], dtype: 'float32' }] }] }));
      res.writeHead(200, { 'content-length': '4000000' });
      res.write(Buffer.alloc(100_000));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as import('node:net').AddressInfo).port;
    const home = tempDir();
    try {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'extract', data, '--model', `http://127.0.0.1:${port}/m/model.json`, '--preprocess', 'tf', '--out', join(tempDir(), 'f.npy')], { env: { ...process.env, TL_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const poll = setInterval(() => {
          const dir = join(home, 'weights', 'url');
          const folders = existsSync(dir) ? readdirSync(dir) : [];
          if (folders.some((f) => readdirSync(join(dir, f)).some((n) => n.startsWith('.w.bin.')))) {
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }, 50);
        child.on('error', reject);
        child.on('close', (code) => {
          clearInterval(poll);
          resolve({ code, stderr });
        });
      });
      expect(r.code, r.stderr).toBe(130);
      const dir = join(home, 'weights', 'url');
      const left = readdirSync(dir).flatMap((f) => readdirSync(join(dir, f)));
      expect(left.filter((n) => n.endsWith('.tmp'))).toEqual([]);
      expect(left.sort()).toEqual(['model.json', 'model.json.sha256']);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }, 60_000);

  it('tl extract removes the temp file a killed extract left beside its output, with a notice', async () => {
    const dir = tempDir();
    const stale = join(dir, '.f.npy.2147483646.deadbeef.tmp');
    writeFileSync(stale, 'partial');
    const r = await runTl(['extract', data, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--workers', '1', '--out', join(dir, 'f.npy')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(stale)).toBe(false);
    expect(r.stderr).toContain(`notice: removed ${stale}, left by an interrupted run`);
  });

  it('tl extract into a missing folder fails at once, naming it', async () => {
    const out = join(tempDir(), 'missing', 'f.npy');
    const r = await runTl(['extract', data, '--model', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--out', out]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: Cannot write ${out}: the folder ${join(out, '..')} does not exist.`);
  });
});

describe('run folders', () => {
  it('runs given the same default name get folders of their own', async () => {
    const base = join(tempDir(), 'models', 'run-2026');
    const folders = await Promise.all([0, 1, 2].map(() => openRunFolder(base, { data, unique: true, resume: false })));
    expect(folders.map((f) => f.dir).sort()).toEqual([base, `${base}-2`, `${base}-3`]);
    for (const f of folders) f.release();
  });

  it('a folder another live process holds is refused; a lock left by a dead one is taken over', async () => {
    const dir = tempDir();
    // The test runner's parent process is alive and is not this one.
    writeFileSync(join(dir, '.tl.lock'), `${process.ppid}\n`);
    const err = await openRunFolder(dir, { data, unique: false, resume: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlError);
    expect((err as Error).message).toBe(`${dir} is in use by another tl process (pid ${process.ppid}).`);
    writeFileSync(join(dir, '.tl.lock'), '2147483646\n');
    const folder = await openRunFolder(dir, { data, unique: false, resume: true });
    folder.release();
    expect(existsSync(join(dir, '.tl.lock'))).toBe(false);
  });

  it("temp files a killed run left are removed by the next run in that folder, with a notice; a live process's are kept", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'checkpoints'));
    const dead = [join(dir, 'checkpoints', '.last.ckpt.2147483646.0badf00d.tmp'), join(dir, '.features.bin.2147483646.deadbeef.tmp')];
    const live = join(dir, `.report.json.${process.ppid}.12345678.tmp`);
    for (const p of [...dead, live]) writeFileSync(p, 'partial');
    const notices: string[] = [];
    const stop = onNotice((t) => notices.push(t));
    const folder = await openRunFolder(dir, { data, unique: false, resume: true });
    stop();
    folder.release();
    expect(dead.some((p) => existsSync(p))).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(notices.sort()).toEqual(dead.map((p) => `removed ${p}, left by an interrupted run`).sort());
  });
});

describe('Ctrl-C while decoding', () => {
  it('stops within a few seconds, exits 130 and leaves no run folder', async () => {
    // Large images decode slowly: all of them take far longer than the time allowed after the signal.
    const big = tempDir();
    const photo = join(tempDir(), 'big.jpg');
    await sharp({ create: { width: 2400, height: 2400, channels: 3, background: { r: 128, g: 128, b: 128 }, noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).jpeg({ quality: 95 }).toFile(photo);
    // Each file its own bytes (a JPEG comment segment after the start marker): copies would be one image under two classes.
    const jpeg = readFileSync(photo);
    for (const cls of ['a', 'b']) {
      mkdirSync(join(big, cls));
      for (let i = 0; i < 250; i++) {
        const text = Buffer.from(`${cls}${String(i).padStart(4, '0')}`);
        writeFileSync(join(big, cls, `${i}.jpg`), Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xfe, 0, text.length + 2]), text, jpeg.subarray(2)]));
      }
    }
    const out = join(tempDir(), 'run');
    const r = await new Promise<{ code: number | null; stderr: string; afterSignal: number }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'finetune', big, ...quick, '--workers', '1', '--out', out], { env: { ...process.env, TL_HOME: tempDir() }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let sentAt = 0;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (sentAt === 0 && /decoding 500 images/.test(stderr)) {
          sentAt = performance.now();
          child.kill('SIGINT');
        }
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr, afterSignal: performance.now() - sentAt }));
    });
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('Interrupted by SIGINT while decoding images; nothing was trained or written.');
    expect(r.afterSignal).toBeLessThan(3000);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(join(out, '..'))).toEqual([]);
  }, 120_000);
});

describe('outside the model store', () => {
  it('tl writes nothing into the home folder: ONNX Runtime\'s telemetry stays off', async () => {
    const home = tempDir();
    const { ORT_DISABLE_TELEMETRY: _unset, ...env } = process.env;
    const r = await new Promise<{ code: number | null }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'doctor'], { env: { ...env, HOME: home, TL_HOME: tempDir() }, stdio: 'ignore' });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code }));
    });
    expect(r.code).toBe(0);
    expect(readdirSync(home, { recursive: true })).toEqual([]);
  });
});
