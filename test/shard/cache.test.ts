import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { runCli } from '../../src/cli/main.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const home = tempDir();
const env = { ...process.env, TL_HOME: home };
const cacheArgs = ['--model', 'mobilenet_v2.nsfwjs', '--freeze', '100', '--input-size', '64', '--engine', 'onnx', '--batch-size', '6'];
const single = join(tempDir(), 'cache');

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 10, 32));
  const r = await runCli(['cache', data, ...cacheArgs, '--out', single], env);
  expect(r.exitCode, r.stderr).toBe(0);
}, 120_000);

const options = (extra: Partial<FinetuneOptions>): FinetuneOptions => finetuneOptions(data, tempDir(), { store: home, freeze: 100, epochs: 5, batchSize: 6, lr: 3e-4, calibrate: 'none', val: 0.2, test: 0.2, seed: 2, resize: 'center-crop', engine: 'onnx', ...extra });

describe('tl cache, its shards, and tl finetune --cache', () => {
  it('three shards merged are the single-machine cache, file for file and byte for byte', async () => {
    // --freeze 100 cuts inside a residual block: two tensors cross, so two boundary files.
    expect(readdirSync(single).sort()).toEqual(['boundary-0.npy', 'boundary-1.npy', 'cache.json']);
    const shards = tempDir();
    for (let i = 0; i < 3; i++) {
      const r = await runCli(['cache', data, ...cacheArgs, '--shard', `${i}/3`, '--out', shards], env);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const merged = join(tempDir(), 'merged');
    const m = await runCli(['merge', shards, '--out', merged], env);
    expect(m.exitCode, m.stderr).toBe(0);
    for (const f of readdirSync(single)) expect(readFileSync(join(merged, f)).equals(readFileSync(join(single, f))), f).toBe(true);
  });

  it('trains the tail from the cache exactly as from the frozen part, running none of it', async () => {
    const before = tf.memory().numTensors;
    const own = await finetune(tf, info, options({}));
    const cached = await finetune(tf, info, options({ cache: single }));
    expect(tf.memory().numTensors).toBe(before);
    expectLearned(cached.history, 3);
    expect(cached.cache.hitRate).toBe(1);
    expect(cached.history.map((h) => [h.loss, h.val_loss])).toEqual(own.history.map((h) => [h.loss, h.val_loss]));
    expect(cached.metrics!.accuracy).toBe(own.metrics!.accuracy);
  });

  it('decodes no image of the run: its pixels may be unreadable as long as the files are the ones cached', async () => {
    const copy = tempDir();
    cpSync(data, copy, { recursive: true, preserveTimestamps: true });
    const cache = join(tempDir(), 'cache');
    const c = await runCli(['cache', copy, ...cacheArgs, '--out', cache], env);
    expect(c.exitCode, c.stderr).toBe(0);
    const ref = await finetune(tf, info, options({ data: copy, cache: cache }));
    // Every image's bytes after its first 64 (the format's signature) overwritten, its size and mtime kept: a decode would fail on each.
    for (const cls of readdirSync(copy)) {
      for (const name of readdirSync(join(copy, cls))) {
        const path = join(copy, cls, name);
        const { atime, mtime } = statSync(path);
        const bytes = readFileSync(path);
        bytes.fill(0x5a, 64);
        writeFileSync(path, bytes);
        utimesSync(path, atime, mtime);
      }
    }
    const blind = await finetune(tf, info, options({ data: copy, cache: cache }));
    expect(blind.skipped).toEqual([]);
    expect(blind.history.map((h) => [h.loss, h.val_loss])).toEqual(ref.history.map((h) => [h.loss, h.val_loss]));
    expect(blind.metrics!.accuracy).toBe(ref.metrics!.accuracy);
  });

  it('refuses a cache made with other settings, naming the difference', async () => {
    await expect(finetune(tf, info, options({ cache: single, freeze: 107 }))).rejects.toThrow(`--cache ${single} was computed with --freeze 100; this run uses 107.`);
    await expect(finetune(tf, info, options({ cache: single, inputSize: 96 }))).rejects.toThrow(`--cache ${single} was computed with --input-size 64; this run uses 96.`);
    await expect(finetune(tf, info, options({ cache: single, weights: 'random' }))).rejects.toThrow(/was computed with frozen weights of sha256 [0-9a-f]{12}; this run uses [0-9a-f]{12}/);
    await expect(finetune(tf, info, options({ cache: tempDir() }))).rejects.toThrow(/is not a frozen-part cache \(no cache.json\)/);
  });
});

/** Re-hashes an output after tampering with it, as a manifest or record someone edited would. */
function rehash(record: string, name: string, bytes: Buffer): void {
  const json = JSON.parse(readFileSync(record, 'utf8')) as { outputs: { name: string; sha256: string }[] };
  json.outputs.find((o) => o.name === name)!.sha256 = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(record, JSON.stringify(json));
}

describe('what merge and --cache read back agrees with its record, not only with its hash', () => {
  it('refuses a shard whose manifest lists a row more or less than its files hold, and a truncated .npy', async () => {
    const shards = tempDir();
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['cache', data, ...cacheArgs, '--shard', `${i}/2`, '--out', shards], env);
      expect(r.exitCode, r.stderr).toBe(0);
      const e = await runCli(['extract', data, ...cacheArgs.filter((a, k) => a !== '--freeze' && cacheArgs[k - 1] !== '--freeze'), '--shard', `${i}/2`, '--out', join(shards, 'x')], env);
      expect(e.exitCode, e.stderr).toBe(0);
      // The shard made its --out folder itself, and says how to merge, --out included.
      expect(e.stdout).toContain(`\`tl merge ${join(shards, 'x')} --out FILE.npy\` joins the shards`);
    }
    const copy = () => {
      const dir = join(tempDir(), 'shards');
      cpSync(shards, dir, { recursive: true });
      return dir;
    };
    // One manifest row fewer: the rows after it would land on other images' outputs.
    const fewer = copy();
    const manifest = join(fewer, 'shard-0-of-2', 'manifest.json');
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { files: unknown[] };
    const rows = m.files.length;
    m.files.pop();
    writeFileSync(manifest, JSON.stringify(m));
    const r1 = await runCli(['merge', fewer, '--out', join(tempDir(), 'merged')], env);
    expect(r1.exitCode).toBe(1);
    expect(r1.stderr).toContain(`boundary-0.npy holds ${rows} rows; its record lists ${rows - 1}.`);
    // A boundary file one row short, its hash updated in the manifest.
    const short = copy();
    const file = join(short, 'shard-1-of-2', 'boundary-1.npy');
    const cut = readFileSync(file).subarray(0, readFileSync(file).length - 4 * 4 * 96 * 4);
    writeFileSync(file, cut);
    rehash(join(short, 'shard-1-of-2', 'manifest.json'), 'boundary-1.npy', cut);
    const r2 = await runCli(['merge', short, '--out', join(tempDir(), 'merged')], env);
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toMatch(/boundary-1\.npy is \d+ bytes; its header's shape \(\d+, 4, 4, 96\) needs \d+ \(truncated\)/);
    // An extract shard's features.npy cut short in its body.
    const feats = join(short, 'x', 'shard-0-of-2', 'features.npy');
    const body = readFileSync(feats).subarray(0, readFileSync(feats).length - 100);
    writeFileSync(feats, body);
    rehash(join(short, 'x', 'shard-0-of-2', 'manifest.json'), 'features.npy', body);
    const r3 = await runCli(['merge', join(short, 'x'), '--out', join(tempDir(), 'f.npy')], env);
    expect(r3.exitCode).toBe(1);
    expect(r3.stderr).toMatch(/features\.npy is \d+ bytes; its header's shape \(\d+, 1280\) needs \d+ \(truncated\)/);
    // An --out inside an input would overwrite the shard being read.
    const own = copy();
    const before = readFileSync(join(own, 'shard-0-of-2', 'boundary-0.npy'));
    const r4 = await runCli(['merge', own, '--out', join(own, 'shard-0-of-2')], env);
    expect(r4.exitCode).toBe(2);
    expect(r4.stderr).toContain(`--out ${join(own, 'shard-0-of-2')} is inside the shard ${join(own, 'shard-0-of-2')}`);
    const self = await runCli(['merge', own, '--out', own], env);
    expect(self.exitCode).toBe(2);
    expect(self.stderr).toContain(`--out ${own} is the input ${own} itself.`);
    expect(readFileSync(join(own, 'shard-0-of-2', 'boundary-0.npy')).equals(before)).toBe(true);
    // A killed merge's temp file (its process gone) is swept by the next merge into that folder.
    const merged = join(tempDir(), 'merged');
    mkdirSync(merged);
    const stale = join(merged, '.boundary-0.npy.99999999.0123abcd.tmp');
    writeFileSync(stale, Buffer.alloc(1000));
    const r5 = await runCli(['merge', own, '--out', merged], env);
    expect(r5.exitCode, r5.stderr).toBe(0);
    expect(r5.stderr).toContain(`removed ${stale}, left by an interrupted merge`);
    expect(existsSync(stale)).toBe(false);
  });

  it('tl finetune --cache refuses a boundary file shorter than its header, or a record with a row too many', async () => {
    const half = join(tempDir(), 'cache');
    cpSync(single, half, { recursive: true });
    const file = join(half, 'boundary-0.npy');
    const bytes = readFileSync(file);
    const cut = bytes.subarray(0, 128 + Math.floor((bytes.length - 128) / 2));
    writeFileSync(file, cut);
    rehash(join(half, 'cache.json'), 'boundary-0.npy', cut);
    await expect(finetune(tf, info, options({ cache: half }))).rejects.toThrow(/boundary-0\.npy is \d+ bytes; its header's shape \(30, 4, 4, 576\) needs \d+ \(truncated\)/);
    const extra = join(tempDir(), 'cache');
    cpSync(single, extra, { recursive: true });
    const record = JSON.parse(readFileSync(join(extra, 'cache.json'), 'utf8')) as { files: { rel: string }[] };
    record.files.push({ ...record.files[0]!, rel: 'class0/extra.png' });
    writeFileSync(join(extra, 'cache.json'), JSON.stringify(record));
    await expect(finetune(tf, info, options({ cache: extra }))).rejects.toThrow('boundary-0.npy holds 30 rows; its record lists 31.');
  });
});
