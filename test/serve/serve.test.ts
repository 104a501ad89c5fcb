// tl serve: real HTTP requests on loopback against a run's model.onnx, answered as tl predict answers them.
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type Serving } from '../../src/serve/index.js';
import { DynamicBatcher } from '../../src/serve/batcher.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');
const images = [0, 1, 2, 3, 4, 5].map((i) => join(data, `class${i % 3}`, `img${i}.png`));
type Top = { class: string; probability: number }[];
let expected: Top[];

beforeAll(async () => {
  await makeColourDataset(data, 3, 8, 32);
  const r = await runTl(['finetune', data, '--input-size', '40', '--freeze', 'all', '--epochs', '1', '--batch-size', '4', '--calibrate', 'none', '--out', run, '-q'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
  const p = await runTl(['predict', '--model', run, ...images, '--top', '3', '--engine', 'onnx', '--json'], { TL_HOME: home });
  expect(p.exitCode, p.stderr).toBe(0);
  expected = (JSON.parse(p.stdout) as { predictions: { top: Top }[] }).predictions.map((x) => x.top);
}, 120_000);

const servers: Serving[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});
const serve = async (extra: Partial<Parameters<typeof startServer>[0]> = {}) => {
  const s = await startServer({ model: run, host: '127.0.0.1', port: 0, maxBatch: 8, maxWaitMs: 1, maxBodyBytes: 1 << 20, top: 3, threads: 1, ...extra });
  servers.push(s);
  return s;
};
const post = (s: Serving, body: Buffer, headers: Record<string, string> = { 'content-type': 'image/png' }, query = '') => fetch(`${s.url}/predict${query}`, { method: 'POST', body, headers });

/** The largest difference between two answers' probabilities, class by class; -1 when their top classes differ. */
function gap(a: Top, b: Top): number {
  if (a[0]!.class !== b[0]!.class) return -1;
  const pb = new Map(b.map((t) => [t.class, t.probability]));
  return Math.max(...a.map((t) => Math.abs(t.probability - (pb.get(t.class) ?? Infinity))));
}

describe('tl serve', () => {
  it('answers POST /predict (raw bytes or a multipart file) as tl predict does, and says what it serves', async () => {
    const s = await serve();
    for (const [i, file] of images.entries()) {
      const r = await post(s, readFileSync(file));
      expect(r.status).toBe(200);
      const body = (await r.json()) as { top: Top };
      expect(gap(body.top, expected[i]!)).toBeGreaterThanOrEqual(0);
      expect(gap(body.top, expected[i]!)).toBeLessThan(1e-5);
    }
    const form = new FormData();
    form.append('image', new Blob([readFileSync(images[1]!)], { type: 'image/png' }), 'x.png');
    const multipart = await fetch(`${s.url}/predict?top=1`, { method: 'POST', body: form });
    const m = (await multipart.json()) as { top: Top };
    expect(m.top).toHaveLength(1);
    expect(gap(m.top, expected[1]!)).toBeLessThan(1e-5);
    const model = (await (await fetch(`${s.url}/model`)).json()) as { labels: string[]; inputSize: number; sha256: string; metadata: Record<string, string> };
    expect(model.labels).toEqual(['class0', 'class1', 'class2']);
    expect(model.inputSize).toBe(40);
    expect(model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(model.metadata['tl.labels']!)).toEqual(model.labels);
    expect(((await (await fetch(`${s.url}/health`)).json()) as { status: string; requests: number }).requests).toBe(images.length + 1);
  });

  it('batches concurrent requests, and a batched answer is the answer the image gets alone', async () => {
    const s = await serve({ maxBatch: 4, maxWaitMs: 200 });
    const answers = await Promise.all(images.map(async (file) => (await (await post(s, readFileSync(file))).json()) as { top: Top }));
    answers.forEach((a, i) => expect(gap(a.top, expected[i]!)).toBeLessThan(1e-5));
    const stats = s.stats();
    expect(stats.items).toBe(6);
    // Six requests at once, at most four per batch: they share batches (how they split depends on when each arrives).
    expect(stats.batches).toBeLessThan(6);
  });

  it('answers bad requests with the reason and keeps serving', async () => {
    const s = await serve({ maxBodyBytes: 4096, maxPixels: 1000 });
    const cases: [Promise<Response>, number, RegExp][] = [
      [post(s, Buffer.from('this is not an image at all')), 400, /not an image this server can read/],
      [post(s, Buffer.alloc(0)), 400, /body is empty/],
      [post(s, Buffer.alloc(5000, 1)), 413, /4096/],
      [post(s, readFileSync(images[0]!)), 400, /too many pixels/],
      [post(s, readFileSync(images[0]!), {}, '?top=0'), 400, /top=/],
      [fetch(`${s.url}/predict`), 405, /POST/],
      [fetch(`${s.url}/nothing`), 404, /POST \/predict/],
      [fetch(`${s.url}/predict`, { method: 'POST', body: new FormData(), headers: {} }), 400, /no file|multipart/],
    ];
    for (const [response, status, error] of cases) {
      const r = await response;
      expect(r.status).toBe(status);
      expect(((await r.json()) as { error: string }).error).toMatch(error);
    }
    expect(s.stats().rejected).toBe(6);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
  });

  it('close() answers the requests in flight, then refuses new ones', async () => {
    const s = await serve({ maxBatch: 8, maxWaitMs: 300 });
    const inFlight = images.slice(0, 3).map((f) => post(s, readFileSync(f)));
    await new Promise((r) => setTimeout(r, 100));
    const closed = s.close();
    const answered = await Promise.all(inFlight);
    expect(answered.map((r) => r.status)).toEqual([200, 200, 200]);
    await closed;
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  });

  it('tl serve from the command line listens, answers, and stops on SIGTERM after its requests', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const cli = runTl(['serve', run, '--port', String(port), '--threads', '1'], { TL_HOME: home });
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    expect(up).toBe(true);
    const r = (await (await fetch(`http://127.0.0.1:${port}/predict`, { method: 'POST', body: readFileSync(images[2]!) })).json()) as { top: Top };
    expect(gap(r.top, expected[2]!)).toBeLessThan(1e-5);
    process.emit('SIGTERM');
    const done = await cli;
    expect(done.exitCode, done.stderr).toBe(0);
    expect(done.stdout).toContain(`http://127.0.0.1:${port}`);
    expect(done.stderr).toMatch(/stopped after 1 requests/);
  });

  it('says what to do when a run folder has no model.onnx', async () => {
    const bare = tempDir();
    const r = await runTl(['serve', bare, '--port', '0'], { TL_HOME: home });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/has no model\.onnx to serve/);
    expect(r.stderr).toMatch(/tl export/);
    rmSync(bare, { recursive: true, force: true });
  });
});

describe('DynamicBatcher', () => {
  it('runs a batch when it is full or its oldest item has waited long enough, one batch at a time', async () => {
    const ran: number[][] = [];
    const b = new DynamicBatcher<number, number>(async (xs) => {
      ran.push(xs);
      await new Promise((r) => setTimeout(r, 20));
      return xs.map((x) => x * 10);
    }, { maxBatch: 3, maxWaitMs: 30 });
    const outs = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    expect(outs).toEqual([10, 20, 30, 40, 50]);
    expect(ran).toEqual([[1, 2, 3], [4, 5]]);
    const late = await b.submit(6);
    expect(late).toBe(60);
    expect(b.stats()).toMatchObject({ items: 6, batches: 3 });
  });

  it('does not wait for items when none is on its way', async () => {
    let coming = 0;
    const b = new DynamicBatcher<number, number>(async (xs) => xs, { maxBatch: 8, maxWaitMs: 60_000, coming: () => coming });
    const started = performance.now();
    expect(await b.submit(1)).toBe(1);
    expect(performance.now() - started).toBeLessThan(1000);
    // With one on its way, the first waits for it and both run as one batch.
    coming = 1;
    const first = b.submit(2);
    await new Promise((r) => setTimeout(r, 20));
    coming = 0;
    expect(await Promise.all([first, b.submit(3)])).toEqual([2, 3]);
    expect(b.stats().sizes[2]).toBe(1);
  });

  it('rejects every item of a batch that fails, and runs the next batch', async () => {
    const b = new DynamicBatcher<number, number>(async (xs) => {
      if (xs.includes(0)) throw new Error('bad batch');
      return xs;
    }, { maxBatch: 2, maxWaitMs: 50 });
    const results = await Promise.allSettled([b.submit(0), b.submit(1), b.submit(2)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
  });
});
