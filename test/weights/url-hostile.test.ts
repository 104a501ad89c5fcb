// A hostile or awkward server for `--model URL`: redirects out of the model's folder, manifests that describe
// terabytes or thousands of shards or types tl cannot decode, gzip-encoded files, and Ctrl-C during a stalled download.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { buildVariant } from '../../src/registry/index.js';
import { initializeWeights } from '../../src/registry/init.js';
import { loadBackbone } from '../../src/weights/backbone.js';
import { saveLayersModel } from '../../src/weights/save.js';
import { BIN } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
const plain = join(tempDir(), 'plain');
let server: Server;
let other: Server;
let base: string;
let otherBase: string;
const seen: string[] = [];
type Json = { weightsManifest: { paths: string[]; weights: { name: string; shape: unknown; dtype: string }[] }[] };
const modelJson = () => JSON.parse(readFileSync(join(plain, 'model.json'), 'utf8')) as Json;

beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
  const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 32 });
  initializeWeights(tf, model, 5);
  await saveLayersModel(tf, model, plain);
  model.dispose();
  other = createServer((req, res) => {
    seen.push(`other:${req.url}`);
    res.writeHead(200).end(readFileSync(join(plain, req.url === '/model.json' ? 'model.json' : 'weights.bin')));
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  otherBase = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  server = createServer((req, res) => {
    const url = req.url ?? '';
    seen.push(url);
    const send = (body: Buffer | string, headers: Record<string, string> = {}) => res.writeHead(200, { 'content-length': String(Buffer.byteLength(body)), ...headers }).end(body);
    if (url === '/shard-redirect/model.json') return send(readFileSync(join(plain, 'model.json')));
    if (url === '/shard-redirect/weights.bin') return void res.writeHead(302, { location: `${otherBase}/weights.bin` }).end();
    if (url === '/json-redirect/model.json') return void res.writeHead(301, { location: `${otherBase}/model.json` }).end();
    if (url === '/inside/model.json') return void res.writeHead(302, { location: '/inside/v2/model.json' }).end();
    if (url === '/inside/v2/model.json') return send(readFileSync(join(plain, 'model.json')));
    if (url === '/inside/weights.bin') return void res.writeHead(307, { location: 'v2/weights.bin' }).end();
    if (url === '/inside/v2/weights.bin') return send(readFileSync(join(plain, 'weights.bin')));
    if (url === '/huge/model.json') {
      const json = modelJson();
      json.weightsManifest[0]!.weights[0]!.shape = [1_000_000, 1_000_000];
      return send(JSON.stringify(json));
    }
    if (url === '/many/model.json') {
      const json = modelJson();
      json.weightsManifest[0]!.paths = Array.from({ length: 3 }, (_, i) => `part${i}.bin`);
      return send(JSON.stringify(json));
    }
    const bad = /^\/bad-(dtype|string|negative|abc)\/model\.json$/.exec(url);
    if (bad) {
      const json = modelJson();
      const w = json.weightsManifest[0]!.weights[1]!;
      if (bad[1] === 'dtype') w.dtype = 'float64';
      if (bad[1] === 'string') w.dtype = 'string';
      if (bad[1] === 'negative') w.shape = [3, -1];
      if (bad[1] === 'abc') w.shape = 'abc';
      return send(JSON.stringify(json));
    }
    if (url === '/gzip/model.json') return send(gzipSync(readFileSync(join(plain, 'model.json'))), { 'content-encoding': 'gzip' });
    if (url === '/gzip/weights.bin') return send(gzipSync(readFileSync(join(plain, 'weights.bin'))), { 'content-encoding': 'gzip' });
    if (url === '/stall/model.json') return send(readFileSync(join(plain, 'model.json')));
    if (url === '/stall/weights.bin') {
      // Headers and a first slice, then nothing: only a signal or the timeout ends it.
      res.writeHead(200, { 'content-length': String(readFileSync(join(plain, 'weights.bin')).length) });
      return void res.write(Buffer.alloc(1000));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => other.close(() => r()));
});

const load = (path: string) => loadBackbone(tf, `${base}${path}`, { weights: 'pretrained', store: tempDir(), preprocess: 'tf' });

describe('a model from a URL', () => {
  it('refuses a redirect out of the model folder, for a shard and for model.json, requesting nothing there', async () => {
    seen.length = 0;
    await expect(load('/shard-redirect/model.json')).rejects.toThrow(`${otherBase}/weights.bin is outside ${base}/shard-redirect/`);
    await expect(load('/json-redirect/model.json')).rejects.toThrow(`${otherBase}/model.json is outside ${base}/json-redirect/`);
    expect(seen.filter((s) => s.startsWith('other:'))).toEqual([]);
    // Redirects that stay in the folder are followed (shard paths resolve against the URL given).
    const backbone = await load('/inside/model.json');
    expect(backbone.model.layers.at(-1)!.name).toBe('out_relu');
    backbone.model.dispose();
  });

  it('refuses a manifest that describes more bytes or shards than the limits before fetching any shard', async () => {
    seen.length = 0;
    await expect(load('/huge/model.json')).rejects.toThrow(/its manifest describes 4\d{12} bytes of weights; at most 2147483648 \(TL_MAX_MODEL_BYTES\) are fetched/);
    expect(seen).toEqual(['/huge/model.json']);
    process.env['TL_MAX_MODEL_SHARDS'] = '2';
    try {
      await expect(load('/many/model.json')).rejects.toThrow('its manifest lists 3 shards; at most 2 (TL_MAX_MODEL_SHARDS) are fetched');
    } finally {
      delete process.env['TL_MAX_MODEL_SHARDS'];
    }
    expect(seen).toEqual(['/huge/model.json', '/many/model.json']);
  });

  it('refuses manifest types and shapes it cannot decode with a message naming the weight', async () => {
    const name = modelJson().weightsManifest[0]!.weights[1]!.name;
    await expect(load('/bad-dtype/model.json')).rejects.toThrow(`weightsManifest[0].weights[1].dtype (weight '${name}'): tl reads float32 or int32 weights.`);
    await expect(load('/bad-string/model.json')).rejects.toThrow('tl reads float32 or int32 weights');
    await expect(load('/bad-negative/model.json')).rejects.toThrow(`weightsManifest[0].weights[1].shape[1] (weight '${name}'):`);
    await expect(load('/bad-abc/model.json')).rejects.toThrow(`weightsManifest[0].weights[1].shape (weight '${name}'):`);
  });

  it('reads a model served with Content-Encoding: gzip', async () => {
    const backbone = await load('/gzip/model.json');
    expect(backbone.model.layers.at(-1)!.name).toBe('out_relu');
    backbone.model.dispose();
  });

  it('Ctrl-C during a stalled download ends tl finetune at once with exit 130, leaving no partial file', async () => {
    const data = tempDir();
    await makeColourDataset(data, 2, 4, 16);
    const home = tempDir();
    const started = Date.now();
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'finetune', data, '--model', `${base}/stall/model.json`, '--preprocess', 'tf', '--input-size', '32', '--out', join(tempDir(), 'run')], { env: { ...process.env, TL_HOME: home, TL_DOWNLOAD_TIMEOUT: '120' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/downloading .*stall\/weights\.bin/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(result.code, result.stderr).toBe(130);
    expect(result.stderr).toContain(`Interrupted by SIGINT while downloading ${base}/stall/weights.bin; the partial file was removed.`);
    expect(Date.now() - started).toBeLessThan(60_000);
    const url = join(home, 'weights', 'url');
    const files = existsSync(url) ? readdirSync(url, { recursive: true }).map(String) : [];
    expect(files.filter((f) => f.endsWith('.tmp') || f.endsWith('weights.bin'))).toEqual([]);
  });
});
