// The shipping section of BENCHMARKS.md: a Fashion-MNIST run exported as float32, float16 and int8 ONNX (size, test
// accuracy and log-loss, ONNX Runtime CPU latency and throughput per image), and `tl serve` under a load generator
// on loopback (requests/s and latency at 1, 8 and 32 clients with and without dynamic batching; resident memory over
// 10,000 requests).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { batches, runSplit, score } from '../src/export/int8.js';
import type { ImageItem } from '../src/data/index.js';
import type { CalibrationBatch } from '../src/onnx/int8.js';
import { loadOnnxClassifier } from '../src/inference/onnx-file.js';
import { loadOrt, OnnxSession } from '../src/onnx/runtime.js';
import { writeFashionMnist } from '../scripts/fashion-mnist.js';
import { debianFile } from '../scripts/debian.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const table = (head: string[], rows: (string | number)[][]) => [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

function tl(bin: string, args: string[], env: NodeJS.ProcessEnv): string {
  return execFileSync(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
}

/** CPU flags that decide ONNX Runtime's integer kernels. */
function int8Flags(): string {
  const flags = existsSync('/proc/cpuinfo') ? (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/) : [];
  const has = (f: string) => flags.includes(f);
  return `avx512_vnni ${has('avx512_vnni') ? 'yes' : 'no'}, avx_vnni ${has('avx_vnni') ? 'yes' : 'no'}, amx_int8 ${has('amx_int8') ? 'yes' : 'no'}`;
}

/** Latency of one image and throughput at batch 16, on `threads` intra-op threads: medians over `rounds` rounds taken in turn. */
async function timings(models: Record<string, Uint8Array>, input: Float32Array, size: number, threads: number, rounds: number): Promise<Record<string, { latencyMs: number; imagesPerSecond: number }>> {
  const one = { data: input.subarray(0, size * size * 3), shape: [1, size, size, 3] };
  const sixteen = { data: input.subarray(0, 16 * size * size * 3), shape: [16, size, size, 3] };
  const samples: Record<string, { lat: number[]; rate: number[] }> = Object.fromEntries(Object.keys(models).map((k) => [k, { lat: [], rate: [] }]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, bytes] of Object.entries(models)) {
      const s = await OnnxSession.open(bytes, { threads });
      for (let i = 0; i < 3; i++) await s.run([sixteen]);
      let t = performance.now();
      for (let i = 0; i < 8; i++) await s.run([sixteen]);
      samples[name]!.rate.push((8 * 16) / ((performance.now() - t) / 1000));
      for (let i = 0; i < 5; i++) await s.run([one]);
      const lat: number[] = [];
      for (let i = 0; i < 40; i++) {
        t = performance.now();
        await s.run([one]);
        lat.push(performance.now() - t);
      }
      samples[name]!.lat.push(median(lat));
      await s.close();
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { latencyMs: median(v.lat), imagesPerSecond: median(v.rate) }]));
}

async function startServe(bin: string, run: string, env: NodeJS.ProcessEnv, args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [bin, 'serve', run, '--port', '0', '--json', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const line = text.split('\n')[0];
      if (text.includes('\n')) resolve((JSON.parse(line!) as { url: string }).url);
    });
    child.on('exit', (code) => reject(new Error(`tl serve exited (${code}) before listening`)));
  });
  return { child, url };
}

const stop = (child: ChildProcess) => new Promise<void>((resolve) => {
  child.on('exit', () => resolve());
  child.kill('SIGTERM');
});

const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

async function load(url: string, body: Buffer, connections: number, options: { duration?: number; amount?: number }): Promise<autocannon.Result> {
  return autocannon({ url: `${url}/predict`, method: 'POST', body, headers: { 'content-type': 'image/jpeg' }, connections, ...(options.amount ? { amount: options.amount } : { duration: options.duration ?? 8 }) });
}

export async function shipBench(root: string, work: string, cores: number): Promise<Section> {
  const bin = join(root, 'bin', 'tl.js');
  const env = { TL_HOME: join(work, 'home') };
  const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
  if (idx.path === null) throw new Error(`the shipping benchmark needs Fashion-MNIST: ${idx.reason}`);
  const data = join(work, 'fashion2000');
  await writeFashionMnist({ src: join(idx.path, '..'), out: data, perClass: 400, classes: [0, 1, 7, 8, 9], split: 'train' });
  const run = join(work, 'run');
  log('shipping: fine-tuning on 2,000 Fashion-MNIST images');
  tl(bin, ['finetune', data, '--out', run, '-q'], env);
  const files: Record<string, string> = { float32: join(work, 'f32.onnx'), float16: join(work, 'f16.onnx'), int8: join(work, 'int8.onnx') };
  const exported: Record<string, { int8?: { calibrationImages: number; check: { agreement: number } } }> = {};
  for (const [q, file] of Object.entries(files)) {
    log(`shipping: exporting ${q}`);
    exported[q] = JSON.parse(tl(bin, ['export', run, '--out', file, '--json', ...(q === 'float32' ? [] : ['--quantize', q])], env)) as (typeof exported)[string];
  }
  const model = await loadOnnxClassifier(files.float32!);
  const meta = { name: model.name, classes: model.classes, preprocess: model.preprocess, inputSize: model.inputSize, temperature: null, ...(model.resize ? { resize: model.resize } : {}) };
  const test: (CalibrationBatch & { items: ImageItem[] })[] = [];
  for await (const b of batches(await runSplit(run, 'test', model.classes), meta)) test.push(b);
  const bytes = Object.fromEntries(Object.entries(files).map(([k, f]) => [k, new Uint8Array(readFileSync(f))]));
  const scores = Object.fromEntries(await Promise.all(Object.entries(bytes).map(async ([k, b]) => [k, await score(b, test, model.classes)] as const)));
  const input = new Float32Array(16 * model.inputSize ** 2 * 3);
  let at = 0;
  for (const b of test) {
    if (at >= input.length) break;
    const take = b.data.subarray(0, Math.min(b.data.length, input.length - at));
    input.set(take, at);
    at += take.length;
  }
  log('shipping: ONNX Runtime timings');
  const t1 = await timings(bytes, input, model.inputSize, 1, 3);
  const tn = await timings(bytes, input, model.inputSize, cores, 3);
  const images = test.reduce((n, b) => n + b.items.length, 0);
  const agreement = (k: string) => (scores[k]!.top.filter((t, i) => t === scores.float32!.top[i]).length / images * 100).toFixed(1);
  const quantRows = Object.keys(files).map((k) => [k, mib(bytes[k]!.length), scores[k]!.accuracy.toFixed(3), scores[k]!.logLoss.toFixed(4), `${agreement(k)}%`, t1[k]!.latencyMs.toFixed(2), t1[k]!.imagesPerSecond.toFixed(1), tn[k]!.latencyMs.toFixed(2), tn[k]!.imagesPerSecond.toFixed(1)]);

  // tl serve under load: a 500x375 JPEG photo per request (decoded and resized by the server).
  const photo = debianFile('python3-skimage', '/usr/lib/python3/dist-packages/skimage/data/chelsea.png').path;
  const jpeg = photo ? await sharp(photo).resize(500, 375).jpeg({ quality: 90 }).toBuffer() : await sharp({ create: { width: 500, height: 375, channels: 3, background: { r: 120, g: 80, b: 40 } } }).jpeg().toBuffer();
  const serveRows: (string | number)[][] = [];
  for (const [label, args] of [['dynamic batching (--max-batch 16 --max-wait-ms 5)', ['--max-batch', '16', '--max-wait-ms', '5']], ['one image per run (--max-batch 1)', ['--max-batch', '1']]] as const) {
    const { child, url } = await startServe(bin, run, env, [...args]);
    await load(url, jpeg, 4, { duration: 2 });
    for (const c of [1, 8, 32]) {
      log(`shipping: tl serve, ${label}, ${c} clients`);
      const health = async () => (await (await fetch(`${url}/health`)).json()) as { batches: number; items: number };
      const before = await health();
      const r = await load(url, jpeg, c, { duration: 8 });
      const after = await health();
      serveRows.push([label, c, r.requests.average.toFixed(1), r.latency.p50, r.latency.p99, r.non2xx + r.errors, ((after.items - before.items) / Math.max(1, after.batches - before.batches)).toFixed(1)]);
    }
    await stop(child);
  }
  // Resident memory over 10,000 requests (8 clients), sampled every half second.
  const { child, url } = await startServe(bin, run, env, []);
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(rss(child.pid!)), 500);
  const r = await load(url, jpeg, 8, { amount: 10_000 });
  clearInterval(timer);
  await stop(child);
  const tenths = Array.from({ length: 10 }, (_, i) => samples[Math.min(samples.length - 1, Math.floor(((i + 1) * samples.length) / 10) - 1)]!);
  const int8 = exported.int8?.int8;
  const ortVersion = (await loadOrt()).ort?.env.versions.common ?? '';
  return {
    title: 'Shipping: quantized exports and tl serve',
    lines: [
      `A run fine-tuned by \`tl finetune\` (defaults: mobilenet_v2.nsfwjs, --freeze 100, 3 epochs) on 2,000 Fashion-MNIST images of 5 classes, exported by \`tl export\` as float32, \`--quantize float16\` and \`--quantize int8\` (calibrated on ${int8?.calibrationImages ?? '?'} of its training images). Accuracy and log-loss on the run's ${images} test images; ONNX Runtime ${ortVersion} CPU timings with no decoding: latency of one image and throughput at batch 16, medians of 3 rounds taken in turn, on 1 thread and on ${cores}. Integer kernels on this CPU: ${int8Flags()} (ONNX Runtime's MLAS picks its u8s8 kernels by CPUID: AVX512-VNNI here where the CPU has it, AMX where it has amx_int8).`,
      '',
      ...table(['export', 'file', 'test accuracy', 'test log-loss', 'same top-1 as float32', 'latency, 1 thread (ms)', 'img/s, 1 thread', `latency, ${cores} threads (ms)`, `img/s, ${cores} threads`], quantRows),
      '',
      `\`tl serve\` of the same run (float32 model.onnx, ${cores} intra-op threads) under autocannon on loopback, 8 s per row after a 2 s warm-up, each request one 500x375 JPEG (${(jpeg.length / 1024).toFixed(0)} KiB) that the server decodes and resizes; the load generator shares the machine's ${cores} cores. "images per batch" is what the server's /health counted during the row. A batch runs when 16 requests wait, when the oldest has waited 5 ms, or at once when no other request is on its way (being read or decoded).`,
      '',
      ...table(['server', 'clients', 'requests/s', 'p50 latency (ms)', 'p99 latency (ms)', 'errors', 'images per batch'], serveRows),
      '',
      `Resident memory of \`tl serve\` over 10,000 requests from 8 clients (${r.requests.total} answered, ${r.non2xx + r.errors} errors, ${r.duration.toFixed(0)} s), at each tenth of the run: ${tenths.map((b) => (b / 2 ** 20).toFixed(0)).join(', ')} MiB.`,
    ],
  };
}
