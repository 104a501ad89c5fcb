import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { UsageError, WeightsError } from '../../src/errors.js';
import { buildVariant } from '../../src/registry/index.js';
import { initializeWeights } from '../../src/registry/init.js';
import { finetune, type FinetuneOptions } from '../../src/train/finetune.js';
import { loadBackbone } from '../../src/weights/backbone.js';
import { saveLayersModel } from '../../src/weights/save.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
const plain = join(tempDir(), 'plain');
let server: Server;
let other: Server;
let base: string;
let otherBase: string;
/** Every request path the servers saw, in order (the other server's prefixed with 'other:'). */
const seen: string[] = [];

beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 2, 8, 32));
  // A tfjs LayersModel tl did not write: MobileNetV2 0.35 with its ImageNet-style top, no tl metadata.
  const model = buildVariant(tf, 'mobilenet_v2_035', { includeTop: true, inputSize: 64 });
  initializeWeights(tf, model, 5);
  await saveLayersModel(tf, model, plain);
  model.dispose();
  server = createServer((req, res) => {
    seen.push(req.url ?? '');
    const hostile = /^\/models\/m\/(escape|backslash|endless)\/model\.json$/.exec(req.url ?? '');
    if (hostile) {
      const json = JSON.parse(readFileSync(join(plain, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
      json.weightsManifest[0]!.paths = [{ escape: '%2e%2e/%2e%2e/secret.bin', backslash: `\\\\127.0.0.1:${(other.address() as AddressInfo).port}\\other.bin`, endless: 'weights.bin' }[hostile[1]!]!];
      return void res.writeHead(200).end(JSON.stringify(json));
    }
    if (req.url === '/models/m/endless/weights.bin') {
      // Far more than the manifest describes, with no length.
      res.writeHead(200);
      const chunk = Buffer.alloc(1 << 16);
      const pump = () => {
        if (res.destroyed) return;
        if (res.write(chunk)) setImmediate(pump);
        else res.once('drain', pump);
      };
      return pump();
    }
    const file = req.url === '/evil/model.json' ? join(plain, 'evil.json') : join(plain, (req.url ?? '/').slice(1));
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  other = createServer((req, res) => {
    seen.push(`other:${req.url}`);
    res.writeHead(200).end(readFileSync(join(plain, 'weights.bin')));
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  otherBase = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  const json = JSON.parse(readFileSync(join(plain, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  json.weightsManifest[0]!.paths = ['../weights.bin'];
  writeFileSync(join(plain, 'evil.json'), JSON.stringify(json));
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => other.close(() => r()));
});

// Random weights with frozen BatchNorm statistics (--bn auto would train them).
const options = (model: string, out: string, extra: Partial<FinetuneOptions> = {}): FinetuneOptions => finetuneOptions(data, out, { model, freeze: 'all', epochs: 1, batchSize: 4, bn: 'frozen', val: 0, test: 0, seed: 1, weights: 'random', store, ...extra });

describe('backbones from paths and URLs', () => {
  it('continues from a run folder tl wrote: same Keras layers, preprocessing from the run', async () => {
    const first = tempDir();
    expectLearned((await finetune(tf, info, options('mobilenet_v2.nsfwjs', first, { weights: 'pretrained', epochs: 2, lr: 0.01 }))).history, 3, 'the first run');
    const backbone = await loadBackbone(tf, first, { weights: 'pretrained', store });
    const registry = buildVariant(tf, 'mobilenet_v2', { includeTop: false, inputSize: 64 });
    expect(backbone.model.layers.map((l) => l.name)).toEqual(registry.layers.map((l) => l.name));
    expect(backbone.preprocess).toBe('raw01');
    registry.dispose();
    backbone.model.dispose();
    const again = await finetune(tf, info, options(first, tempDir(), { freeze: 100, weights: 'pretrained' }));
    expect(again.frozenLayers).toBe(100);
    expectLearned(again.history, 3, 'the continued run');
  });

  it('a tfjs model tl did not write needs --preprocess, then fine-tunes from its last feature map', async () => {
    await expect(loadBackbone(tf, plain, { weights: 'pretrained', store })).rejects.toBeInstanceOf(UsageError);
    const backbone = await loadBackbone(tf, plain, { weights: 'pretrained', store, preprocess: 'tf' });
    expect(backbone.model.layers.at(-1)!.name).toBe('out_relu');
    backbone.model.dispose();
  });

  it('refuses an --input-size that a model with a fixed input cannot take, naming both', async () => {
    await expect(loadBackbone(tf, plain, { weights: 'pretrained', store, preprocess: 'tf', inputSize: 96 })).rejects.toThrow(`--input-size 96: ${plain} takes inputs of 64 x 64 pixels only (its input layer is fixed at [null, 64, 64, 3]).`);
  });

  it('loads a model.json from a URL into the store', async () => {
    const backbone = await loadBackbone(tf, `${base}/model.json`, { weights: 'pretrained', store, preprocess: 'tf' });
    expect(backbone.model.layers.at(-1)!.name).toBe('out_relu');
    backbone.model.dispose();
  });

  it('tl finetune reports the download of a URL model on stderr, fetching each file once', async () => {
    const { runCli } = await import('../../src/cli/main.js');
    seen.length = 0;
    const r = await runCli(['finetune', data, '--model', `${base}/model.json`, '--preprocess', 'tf', '--epochs', '1', '--input-size', '64', '--val', '0', '--test', '0', '--workers', '1', '--out', join(tempDir(), 'run')], { ...process.env, TL_HOME: tempDir() });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`downloading ${base}/model.json .*MiB`));
    expect(r.stderr).toMatch(/downloading .*weights\.bin .*MiB of .*MiB/);
    expect(seen).toEqual(['/model.json', '/weights.bin']);
  });

  it('refuses URL shard paths that escape the model folder or its host, fetching nothing from there', async () => {
    seen.length = 0;
    const own = tempDir();
    await expect(loadBackbone(tf, `${base}/models/m/escape/model.json`, { weights: 'pretrained', store: own, preprocess: 'tf' })).rejects.toThrow(
      `Shard path '%2e%2e/%2e%2e/secret.bin' in ${base}/models/m/escape/model.json resolves to ${base}/models/secret.bin, outside ${base}/models/m/escape/; refused.`,
    );
    await expect(loadBackbone(tf, `${base}/models/m/backslash/model.json`, { weights: 'pretrained', store: own, preprocess: 'tf' })).rejects.toThrow(
      new RegExp(`resolves to ${otherBase}/other\\.bin, outside ${base}/models/m/backslash/; refused`),
    );
    expect(seen).toEqual(['/models/m/escape/model.json', '/models/m/backslash/model.json']);
  });

  it('stops a shard that sends more than its manifest describes', async () => {
    const own = tempDir();
    const err = await loadBackbone(tf, `${base}/models/m/endless/model.json`, { weights: 'pretrained', store: own, preprocess: 'tf' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toMatch(/endless\/weights\.bin: it sent more than the \d+ bytes/);
  });

  it('refuses shard paths that leave the model folder', async () => {
    await expect(loadBackbone(tf, `${base}/evil/model.json`, { weights: 'pretrained', store, preprocess: 'tf' })).rejects.toThrow(WeightsError);
    await expect(loadBackbone(tf, join(plain, 'evil.json'), { weights: 'pretrained', store, preprocess: 'tf' })).rejects.toThrow(/leaves the model folder/);
  });
});
