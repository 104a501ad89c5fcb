// Exports checked in a real browser: Debian's Chromium, headless, driven by playwright-core, loads the page that
// `tl export --demo` writes from a loopback server and classifies the same images as `tl predict` (the ONNX model in
// onnxruntime-web's wasm build, the LayersModel in TensorFlow.js): the same top-1, probabilities within 1e-4.
import { existsSync, readFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const CHROMIUM = [process.env['TL_CHROMIUM'], '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
if (!CHROMIUM) console.warn('skipping the browser tests: no Chromium (install Debian\'s chromium, or set TL_CHROMIUM to its executable)');

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.bin': 'application/octet-stream', '.onnx': 'application/octet-stream', '.png': 'image/png' };

/** A static file server for `root` on loopback. */
function serveFolder(root: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(root) || !existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }).end(readFileSync(path));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

type Top = { class: string; probability: number }[];

describe.skipIf(!CHROMIUM)('exports in a real browser', () => {
  const data = tempDir();
  const home = tempDir();
  const run = join(tempDir(), 'run');
  // Images at the model's input size: the browser's canvas and tl's decoder then see the same pixels.
  const images = [0, 1, 2, 3, 4, 5].map((i) => join(data, `class${i % 3}`, `img${i}.png`));
  let browser: Browser;
  let expected: Top[];
  const servers: Server[] = [];

  beforeAll(async () => {
    await makeColourDataset(data, 3, 8, 40);
    const r = await runTl(['finetune', data, '--input-size', '40', '--freeze', '100', '--epochs', '1', '--batch-size', '8', '--out', run, '-q'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const p = await runTl(['predict', '--model', run, ...images, '--top', '3', '--json'], { TL_HOME: home });
    expect(p.exitCode, p.stderr).toBe(0);
    expected = (JSON.parse(p.stdout) as { predictions: { top: Top }[] }).predictions.map((x) => x.top);
    // Chromium keeps its settings (dconf, caches) under HOME and XDG folders: a temporary one, not the user's.
    const own = tempDir();
    const env = { ...process.env, HOME: own, XDG_CONFIG_HOME: join(own, '.config'), XDG_CACHE_HOME: join(own, '.cache'), XDG_DATA_HOME: join(own, '.local', 'share') };
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox'], env: env as Record<string, string> });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    for (const s of servers) s.close();
  });

  /** Classifies `images` on the demo page in `dir`; also returns every URL the page asked for. */
  async function classifyInPage(dir: string, query = ''): Promise<{ answers: Top[]; requests: string[]; origin: string }> {
    mkdirSync(join(dir, 'images'), { recursive: true });
    images.forEach((file, i) => copyFileSync(file, join(dir, 'images', `${i}.png`)));
    const { server, url } = await serveFolder(dir);
    servers.push(server);
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}/index.html${query}`);
    await page.waitForFunction(() => (globalThis as unknown as { tlDemo?: unknown }).tlDemo !== undefined);
    await page.evaluate(() => (globalThis as unknown as { tlDemo: { ready: Promise<boolean> } }).tlDemo.ready);
    const answers: Top[] = [];
    for (let i = 0; i < images.length; i++) answers.push(await page.evaluate((u) => (globalThis as unknown as { tlDemo: { classify(u: string): Promise<Top> } }).tlDemo.classify(u), `images/${i}.png`));
    expect(await page.textContent('#status')).toMatch(/^ready/);
    await page.close();
    expect(errors).toEqual([]);
    return { answers, requests, origin: url };
  }

  const expectSameAnswers = (answers: Top[]) => answers.forEach((a, i) => {
    expect(a[0]!.class).toBe(expected[i]![0]!.class);
    for (const t of expected[i]!) expect(Math.abs(a.find((x) => x.class === t.class)!.probability - t.probability)).toBeLessThan(1e-4);
  });

  it('the ONNX export runs in onnxruntime-web (wasm) as tl predict runs it, from files beside it alone', async () => {
    const dir = tempDir();
    const r = await runTl(['export', run, '--out', join(dir, 'model.onnx'), '--demo'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(join(dir, 'index.html'));
    const { answers, requests, origin } = await classifyInPage(dir);
    expectSameAnswers(answers);
    expect(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);
    expect(requests.some((u) => u.endsWith('/ort-wasm-simd-threaded.wasm'))).toBe(true);
  }, 120_000);

  it('the TensorFlow.js export runs in @tensorflow/tfjs as tl predict runs it', async () => {
    const dir = join(tempDir(), 'tfjs');
    const r = await runTl(['export', run, '--format', 'tfjs', '--out', dir, '--demo'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const { answers, requests, origin } = await classifyInPage(dir, '?backend=cpu');
    expectSameAnswers(answers);
    expect(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);
  }, 120_000);

  it('--demo leaves an index.html it did not write alone', async () => {
    const dir = tempDir();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'index.html'), '<p>mine</p>');
    const r = await runTl(['export', run, '--out', join(dir, 'model.onnx'), '--demo'], { TL_HOME: home });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('is not a page tl wrote');
    expect(readFileSync(join(dir, 'index.html'), 'utf8')).toBe('<p>mine</p>');
  });
});
