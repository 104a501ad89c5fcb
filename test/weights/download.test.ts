import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../../src/errors.js';
import { download } from '../../src/weights/download.js';
import { tempDir } from '../helpers/tmp.js';

const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const md5 = createHash('md5').update(body).digest('hex');
const sha256 = createHash('sha256').update(body).digest('hex');
const MAX = 1_000_000;
let server: Server;
let base: string;
let requests = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/truncated.h5') {
      // Promise the whole file, send half, then hang up.
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, body.length / 2), () => res.socket?.destroy());
      return;
    }
    if (req.url === '/endless.h5') {
      // A body that never ends, without a length.
      res.writeHead(200);
      const chunk = Buffer.alloc(65_536, 7);
      const pump = () => {
        if (res.destroyed) return;
        if (res.write(chunk)) setImmediate(pump);
        else res.once('drain', pump);
      };
      pump();
      return;
    }
    if (req.url === '/huge-length.h5') {
      res.writeHead(200, { 'content-length': String(2 ** 40) });
      res.write(body.subarray(0, 1000));
      return;
    }
    if (req.url === '/stall.h5') {
      // Headers and a first slice, then nothing.
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, 1000));
      return;
    }
    if (req.url === '/missing.h5') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': String(body.length) });
    // Send in slices so concurrent downloads interleave.
    let at = 0;
    const pump = () => {
      if (at >= body.length) return void res.end();
      res.write(body.subarray(at, at + 32_768));
      at += 32_768;
      setTimeout(pump, 2);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

describe('downloads into the store', () => {
  it('fetches a good file, checks its md5 and reports progress; a second call does not fetch again', async () => {
    const dir = tempDir();
    const dest = join(dir, 'good.h5');
    const seen: number[] = [];
    await download(`${base}/good.h5`, dest, { hash: md5, maxBytes: MAX, onProgress: (p) => seen.push(p.bytes) });
    expect(readFileSync(dest).equals(body)).toBe(true);
    expect(seen.at(-1)).toBe(body.length);
    const before = requests;
    await download(`${base}/good.h5`, dest, { hash: md5, maxBytes: MAX });
    expect(requests).toBe(before);
  });

  it('refuses and deletes a file with the wrong hash', async () => {
    const dir = tempDir();
    const dest = join(dir, 'bad.h5');
    const err = await download(`${base}/good.h5`, dest, { hash: '0'.repeat(64), maxBytes: MAX }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toMatch(/failed its integrity check: expected sha256 0{64}, got [0-9a-f]{64}/);
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it('a truncated transfer is an error and leaves nothing behind', async () => {
    const dir = tempDir();
    const err = await download(`${base}/truncated.h5`, join(dir, 't.h5'), { hash: md5, maxBytes: MAX }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toMatch(/truncated|broke off/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an HTTP error names the status', async () => {
    const err = await download(`${base}/missing.h5`, join(tempDir(), 'm.h5'), { hash: null, maxBytes: MAX }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/HTTP 404/);
  });

  it('concurrent fetches of one file end with one intact file', async () => {
    const dir = tempDir();
    const dest = join(dir, 'shared.h5');
    await Promise.all(Array.from({ length: 4 }, () => download(`${base}/good.h5`, dest, { hash: sha256, maxBytes: MAX })));
    expect(readFileSync(dest).equals(body)).toBe(true);
    expect(leftovers(dir)).toEqual([]);
  });

  it('without a published hash, records the first download and checks it later', async () => {
    const dir = tempDir();
    const dest = join(dir, 'nohash.h5');
    await download(`${base}/good.h5`, dest, { hash: null, maxBytes: MAX });
    expect(readFileSync(`${dest}.sha256`, 'utf8').trim()).toBe(sha256);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(dest, 'tampered');
    const before = requests;
    await download(`${base}/good.h5`, dest, { hash: null, maxBytes: MAX });
    expect(requests).toBe(before + 1);
    expect(readFileSync(dest).equals(body)).toBe(true);
  });

  it('refuses a Content-Length above what is expected without writing anything', async () => {
    const dir = tempDir();
    const err = await download(`${base}/huge-length.h5`, join(dir, 'h.h5'), { hash: null, maxBytes: MAX }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toMatch(/huge-length\.h5: the server announces 1099511627776 bytes .*at most 1000000/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('stops a body that goes past the expected size', async () => {
    const dir = tempDir();
    const err = await download(`${base}/endless.h5`, join(dir, 'e.h5'), { hash: null, maxBytes: MAX }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toMatch(/endless\.h5: it sent more than the 1000000 bytes/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a stalled transfer times out with a message naming the URL', async () => {
    const dir = tempDir();
    const started = performance.now();
    const err = await download(`${base}/stall.h5`, join(dir, 's.h5'), { hash: null, maxBytes: MAX, timeoutSeconds: 0.5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toBe(`Download of ${base}/stall.h5 stalled: nothing received for 0.5 s.`);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a stored file that no longer matches its recorded hash is fetched again, with a notice', async () => {
    const { onNotice } = await import('../../src/util/notice.js');
    const dir = tempDir();
    const dest = join(dir, 'n.h5');
    await download(`${base}/good.h5`, dest, { hash: null, maxBytes: MAX });
    const { writeFileSync } = await import('node:fs');
    const damaged = Buffer.from(body);
    damaged[1000] = damaged[1000]! ^ 1;
    writeFileSync(dest, damaged);
    const notices: string[] = [];
    const stop = onNotice((t) => notices.push(t));
    await download(`${base}/good.h5`, dest, { hash: null, maxBytes: MAX });
    stop();
    expect(readFileSync(dest).equals(body)).toBe(true);
    expect(notices).toEqual([`${dest} does not match its recorded hash (damaged or changed); downloading it again from ${base}/good.h5`]);
  });
});
