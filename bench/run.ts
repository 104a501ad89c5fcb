// `npm run bench`: decoding, training throughput and whole fine-tunes, beside PyTorch; writes BENCHMARKS.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { choicesBench } from './choices.js';
import { vectorExtensions, writeSection } from './section.js';
import { availableParallelism, cpus, homedir, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { loadBackend, wasmHeapBytes, type Tf } from '../src/backend/index.js';
import { ImageSource, preprocess } from '../src/data/index.js';
import { listImages } from '../src/data/scan.js';
import { extract } from '../src/features/index.js';
import { loadFeatureModel } from '../src/inference/index.js';
import { exportOnnx } from '../src/onnx/export.js';
import { OnnxSession } from '../src/onnx/runtime.js';
import { finetune, type FinetuneOptions, type FinetuneResult } from '../src/train/finetune.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { debianFile } from '../scripts/debian.js';
import { writeFashionMnist } from '../scripts/fashion-mnist.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PYTHON = '/usr/bin/python3';
const log = (s: string) => process.stderr.write(`${s}\n`);

interface Section {
  title: string;
  lines: string[];
}

function table(head: string[], rows: (string | number)[][]): string[] {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

const fmt = (v: number, digits = 1) => v.toFixed(digits);

/** ~500x375 JPEGs cut from Debian's scikit-image sample photos (synthetic gradients where they are unavailable). */
async function makeJpegs(dir: string, count: number): Promise<string> {
  const photos = ['chelsea.png', 'coffee.png', 'astronaut.png', 'rocket.jpg', 'motorcycle_left.png', 'hubble_deep_field.jpg']
    .map((f) => debianFile('python3-skimage', `/usr/lib/python3/dist-packages/skimage/data/${f}`).path)
    .filter((p): p is string => p !== null);
  for (let i = 0; i < count; i++) {
    const cls = join(dir, `c${i % 4}`);
    if (!existsSync(cls)) execFileSync('mkdir', ['-p', cls]);
    const file = join(cls, `${i}.jpg`);
    if (photos.length > 0) {
      const src = sharp(photos[i % photos.length]!);
      const meta = await src.metadata();
      const scale = Math.max(500 / (meta.width ?? 500), 375 / (meta.height ?? 375)) * (1 + (i % 5) * 0.1);
      const w = Math.round((meta.width ?? 500) * scale);
      const h = Math.round((meta.height ?? 375) * scale);
      await sharp(photos[i % photos.length]!).resize(w, h).extract({ left: (i * 13) % (w - 500 + 1), top: (i * 7) % (h - 375 + 1), width: 500, height: 375 }).jpeg({ quality: 90 }).toFile(file);
    } else {
      await sharp({ create: { width: 500, height: 375, channels: 3, background: { r: (i * 37) % 255, g: (i * 91) % 255, b: (i * 53) % 255 } } }).jpeg({ quality: 90 }).toFile(file);
    }
  }
  return photos.length > 0 ? `${count} JPEGs, 500x375, cut from scikit-image sample photos` : `${count} synthetic 500x375 JPEGs (scikit-image photos unavailable)`;
}

async function decodeBench(tf: Tf, work: string, count: number): Promise<Section> {
  const dir = join(work, 'jpegs');
  const source = await makeJpegs(dir, count);
  // A list of images, not a dataset: the crops repeat across folders (the same bytes under two classes).
  const items = (await listImages([dir])).items;
  const rate = async (fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    return items.length / ((performance.now() - t0) / 1000);
  };
  const pass = (src: ImageSource) => async () => {
    for await (const batch of src.batches(items, { batchSize: 32 })) {
      const x = tf.tidy(() => preprocess(tf, tf.tensor4d(Float32Array.from(batch.pixels), [batch.items.length, 224, 224, 3]), 'tf'));
      await x.data();
      x.dispose();
    }
  };
  const cached = new ImageSource(items, { size: 224 });
  const uncached = new ImageSource(items, { size: 224, cacheBytes: 0 });
  const decodeOnly = await rate(async () => void (await new ImageSource(items, { size: 224, cacheBytes: 0 }).validate(items)));
  const first = await rate(pass(cached));
  const second = await rate(pass(cached));
  const noCache = await rate(pass(uncached));
  return {
    title: 'Decoding and preprocessing (224x224)',
    lines: [
      `${source}; sharp with ${availableParallelism()} concurrent decodes, batches of 32, \`tf\` preprocessing into a tensor.`,
      '',
      ...table(['pipeline', 'img/s'], [
        ['decode + resize only (sharp)', fmt(decodeOnly)],
        ['decode + resize + preprocess, first epoch (fills the cache)', fmt(first)],
        ['cached uint8 + preprocess, later epochs', fmt(second)],
        ['decode + resize + preprocess every epoch (cache off)', fmt(noCache)],
      ]),
    ],
  };
}

function torch(args: string[], python = PYTHON): Record<string, unknown> | null {
  if (!existsSync(python)) return null;
  const r = spawnSync(python, [join(ROOT, 'bench', 'torch_reference.py'), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    log(`torch reference unavailable: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    return null;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** What a fine-tune in its own process reports: its history and the process's peak resident memory. */
interface IsolatedRun {
  history: FinetuneResult['history'];
  frozenPass: FinetuneResult['frozenPass'];
  /** The sampled peak of resident memory and what JavaScript's buffers and the wasm heap held then. */
  peak?: { rssBytes: number; arrayBufferBytes: number; wasmHeapBytes: number; phase: string };
  classes: number;
  wasmHeapBytes: number | null;
  maxRssBytes: number;
  seconds: number;
}

/**
 * Runs one fine-tune in a fresh Node process (this script with `--one`), so that its peak resident memory is its
 * own and not what earlier configurations left in this process.
 */
function isolated(backend: 'wasm' | 'cpu', options: FinetuneOptions): IsolatedRun {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ backend, options })], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`the fine-tune of ${options.model} --freeze ${String(options.freeze)} failed (exit ${String(r.status)})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as IsolatedRun;
}

/** Whether a run learned: its last training loss well below chance (ln classes), as the test suite requires. */
function learned(run: IsolatedRun): boolean {
  return run.history.length > 0 && run.history.at(-1)!.loss < 0.6 * Math.log(run.classes);
}

/**
 * A timing row must come from a model that trains: a run that did not learn stops the bench (so that a timing can
 * never again hide a model that cannot train), unless `timingOnly` says why it cannot (then the row says so).
 */
function lastLoss(run: IsolatedRun, what: string, timingOnly?: string): string {
  const loss = run.history.at(-1)?.loss ?? NaN;
  if (learned(run)) return loss.toFixed(3);
  if (timingOnly === undefined) throw new Error(`${what} did not learn: its last training loss ${loss.toFixed(3)} is not well below chance (ln ${run.classes} = ${Math.log(run.classes).toFixed(3)})`);
  return `${loss.toFixed(3)} (did not learn: ${timingOnly})`;
}

async function runOne(spec: string): Promise<void> {
  const { backend, options } = JSON.parse(spec) as { backend: 'wasm' | 'cpu'; options: FinetuneOptions };
  const { tf, info } = await loadBackend({ choice: backend });
  // Memory every 20 ms, with the phase the run was in: at the peak, what JavaScript's buffers (the feature cache, the
  // step's inputs and outputs) and TensorFlow.js's wasm heap held; the rest is native (ONNX Runtime, Node.js, libraries).
  let phase = 'loading';
  let peak: NonNullable<IsolatedRun['peak']> = { rssBytes: 0, arrayBufferBytes: 0, wasmHeapBytes: 0, phase };
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > peak.rssBytes) peak = { rssBytes: m.rss, arrayBufferBytes: m.arrayBuffers, wasmHeapBytes: wasmHeapBytes() ?? 0, phase };
  };
  const timer = setInterval(sample, 20);
  const t0 = performance.now();
  const r = await finetune(tf, info, { ...options, onProgress: (e) => (phase = e.phase === 'frozen' ? 'frozen pass' : e.phase === 'train' || e.phase === 'validate' || e.phase === 'epoch' ? 'epochs' : e.phase) });
  const seconds = (performance.now() - t0) / 1000;
  sample();
  clearInterval(timer);
  // resourceUsage reports kilobytes.
  const out: IsolatedRun = { history: r.history, frozenPass: r.frozenPass, classes: r.classes.length, wasmHeapBytes: r.wasmHeapBytes, maxRssBytes: process.resourceUsage().maxRSS * 1024, seconds, peak };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const gib = (bytes: number | null | undefined) => (bytes ? fmt(bytes / 2 ** 30, 2) : '-');

/** Rows of the memory breakdown: each isolated run's sampled peak, split by what held it. */
const breakdown: (string | number)[][] = [];
function addBreakdown(label: string, run: IsolatedRun, peer: number | null): void {
  const p = run.peak;
  if (!p) return;
  const rest = p.rssBytes - p.arrayBufferBytes - p.wasmHeapBytes;
  breakdown.push([label, gib(run.maxRssBytes), p.phase, gib(p.arrayBufferBytes), gib(p.wasmHeapBytes), gib(rest), peer ? gib(peer) : '-', peer ? `${fmt(run.maxRssBytes / peer, 2)}x` : '-']);
}

function memorySection(): Section {
  return {
    title: 'Memory breakdown',
    lines: [
      'Each tl run above, sampled every 20 ms in its own process: its peak resident memory (the operating system\'s count), the phase it was in at the sampled peak, and what held memory then: JavaScript\'s buffers (the feature cache, the decoded images, each step\'s inputs and the weights and optimizer slots copied out of ONNX Runtime, and copies not yet garbage-collected), TensorFlow.js\'s wasm heap (the Keras model: every weight, and the tfjs engine\'s activations), and the rest (ONNX Runtime\'s sessions and arenas, V8\'s heap, Node.js and its libraries). PyTorch is the same work\'s peer (the step\'s for the throughput rows, the caching loop\'s for the whole fine-tune).',
      '',
      ...table(['run', 'peak resident (GiB)', 'phase at the peak', 'JavaScript buffers (GiB)', 'wasm heap (GiB)', 'ONNX Runtime, V8 and the rest (GiB)', 'PyTorch (GiB)', 'tl / PyTorch'], breakdown),
    ],
  };
}

function baseOptions(data: string, out: string, extra: Partial<FinetuneOptions>): FinetuneOptions {
  return {
    data, model: 'mobilenet_v2', out, freeze: 100, epochs: 3, batchSize: 16, lr: 'auto', accumulate: 1, bn: 'frozen', dropout: 0.2, augment: 'none',
    val: 0, test: 0, seed: 42, resize: 'center-crop', maxPixels: 1e8, weights: 'random', workers: 1, ...extra,
  };
}

async function trainingBench(work: string, data: string, quick: boolean): Promise<{ section: Section; steps: Record<string, number>; memory: Record<string, number> }> {
  const rows: (string | number)[][] = [];
  const steps: Record<string, number> = {};
  const memory: Record<string, number> = {};
  const cores = availableParallelism();
  const configs: [string, number][] = [['mobilenet_v2', 100], ['resnet50', 140], ['mobilenet_v2', 0]];
  for (const [model, freeze] of configs) {
    const runsOfConfig: [string, IsolatedRun][] = [];
    // tfjs on every row but --freeze 0 (where it trains the whole network on wasm: minutes per epoch); ONNX Runtime on all.
    const engines: [string, number][] = [...(freeze > 0 ? ([['wasm', 1], ['wasm', cores]] as [string, number][]) : []), ['onnx', cores], ...(model === 'mobilenet_v2' && freeze > 0 && !quick ? ([['cpu', cores]] as [string, number][]) : [])];
    for (const [engineName, workers] of engines) {
      const epochs = engineName === 'cpu' ? 1 : 3;
      const label = engineName === 'onnx' ? 'onnxruntime' : engineName === 'cpu' ? 'tfjs cpu' : 'tfjs wasm';
      log(`training throughput: ${model} --freeze ${freeze} on ${label}, ${workers} thread(s)`);
      // MobileNetV2 starts from the pretrained weights that install from npm; ResNet50 has none offline, so it starts
      // from random weights with its trainable BatchNorm layers training (pinned random statistics cannot learn).
      const weights = model === 'mobilenet_v2' ? { model: 'mobilenet_v2.nsfwjs', weights: 'pretrained' as const } : { model, weights: 'random' as const, bn: 'train' as const };
      const r = isolated(engineName === 'cpu' ? 'cpu' : 'wasm', baseOptions(engineName === 'cpu' ? join(work, 'tiny') : data, join(work, `run-${model}-${freeze}-${engineName}-${workers}`), { ...weights, freeze, epochs, workers, engine: engineName === 'onnx' ? 'onnx' : 'tfjs', store: join(work, 'store') }));
      // The frozen pass runs once over the training images (these runs hold none out), then every epoch trains from
      // the cache: frozen forward and step together is the pass and the first epoch, over the same images.
      const n = r.frozenPass?.images ?? 0;
      const uncachedRate = r.frozenPass ? n / (r.frozenPass.seconds + n / r.history[0]!.img_per_s) : r.history[0]!.img_per_s;
      // With nothing frozen there is no pass: the epochs after the first (which decodes) are the step's rate.
      const later = r.frozenPass ? r.history : r.history.slice(1);
      const cachedRate = later.length > 0 ? later.reduce((a, h) => a + h.img_per_s, 0) / later.length : NaN;
      steps[`${model}:${freeze}:${engineName}:${workers}`] = cachedRate;
      steps[`${model}:${freeze}:${engineName}:${workers}:uncached`] = uncachedRate;
      memory[`${model}:${freeze}:${engineName}:${workers}`] = r.maxRssBytes;
      runsOfConfig.push([`${model} --freeze ${freeze}, ${label}, ${workers} thread(s)`, r]);
      rows.push([`${model} --freeze ${freeze}`, engineName === 'onnx' ? 'tl onnx (compiled train step)' : `tl ${engineName}`, workers, fmt(uncachedRate), Number.isNaN(cachedRate) ? '-' : fmt(cachedRate), gib(r.maxRssBytes), engineName === 'onnx' ? '-' : gib(r.wasmHeapBytes), lastLoss(r, `${model} --freeze ${freeze} on ${label}`, engineName === 'cpu' ? 'one epoch on a few images, timing only' : undefined)]);
    }
    const ref = torch(['step', '--model', model, '--batch-size', '16', '--steps', quick ? '2' : '5', ...(freeze === 0 ? ['--freeze-none'] : [])]);
    for (const [label, run] of runsOfConfig) addBreakdown(label, run, ref ? (ref['max_rss_bytes'] as number) : null);
    if (ref) {
      steps[`${model}:${freeze}:torch`] = ref['img_per_s'] as number;
      memory[`${model}:${freeze}:torch`] = ref['max_rss_bytes'] as number;
      rows.push([`${model} --freeze ${freeze}`, `PyTorch ${String(ref['torch'])} CPU`, `${String(ref['threads'])} threads`, fmt(ref['img_per_s'] as number), '(same: no cache)', gib(ref['max_rss_bytes'] as number), '-', '(random data)']);
    } else {
      rows.push([`${model} --freeze ${freeze}`, 'PyTorch', '-', 'not measured: /usr/bin/python3 cannot import torch', '-', '-', '-', '-']);
    }
  }
  return {
    section: {
      title: 'Training throughput (batch 16, 224x224)',
      lines: [
        'Two classes of Fashion-MNIST at 224x224. MobileNetV2 rows start from `mobilenet_v2.nsfwjs` (pretrained weights that install from npm); ResNet50 has no pretrained weights offline and starts from random ones with its trainable BatchNorm layers training (`--bn train`), since pinned random statistics cannot learn. The last column shows that each run learned. PyTorch steps on random tensors (its step time does not depend on the data) with random weights.',
        '',
        'tl: the frozen part runs once over the images (decoding them), then every epoch reads its outputs from the cache and runs only the tail; the first rate column is that pass and the first epoch together (decoding, session start and warm-up included: for these few images it understates the uncached step, which the summary takes from the profile section\'s warm timings), the second the epochs\'. `tl onnx` runs the frozen part and the compiled train step on ONNX Runtime with every core; `tl wasm` trains on TensorFlow.js (one thread, or replicas in worker threads). PyTorch runs its standard loop (frozen layers with `requires_grad=False`, BatchNorm in eval mode), so every step runs the whole network. With `--freeze 0` there is nothing to cache: every step is the whole network on both sides. The `tensorflow` backend (tfjs-node) is not installable here.',
        '',
        'Each tl configuration runs in its own Node process; peak resident memory is that process\'s (`process.resourceUsage().maxRSS`: the model, the decoded images, the feature cache, ONNX Runtime\'s arenas, worker threads), PyTorch\'s is its process\'s `ru_maxrss` for the same step. The wasm heap is the part of tl\'s resident memory that TensorFlow.js\'s wasm backend holds (its limit is 4 GiB).',
        '',
        ...table(['model', 'engine', 'threads', 'img/s, frozen pass and first epoch (decoding included)', 'img/s, cached step', 'peak resident (GiB)', 'of which wasm heap (GiB)', 'last epoch train loss (ln 2 = 0.693)'], rows),
      ],
    },
    steps,
    memory,
  };
}

async function finetuneBench(work: string, data: string, images: number, model: string): Promise<{ section: Section; tl: number; tlOnnx: number; torch: number | null; torchCached: number | null; cachedRatio: number | null; memory: Record<string, number> }> {
  const cores = availableParallelism();
  const options = (out: string, extra: Partial<FinetuneOptions>) => baseOptions(data, join(work, out), { model, epochs: 10, val: 0.15, test: 0.15, workers: cores, store: join(work, 'store'), weights: 'pretrained', ...extra });
  // tl on ONNX Runtime and the caching PyTorch loop (the same work) alternate over rounds: medians, and the median of
  // the rounds' ratios. The other two rows are far apart from these and run once.
  const ROUNDS = 3;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const onnxRuns: IsolatedRun[] = [];
  const cachedRuns: Record<string, unknown>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    log(`whole fine-tune, round ${round + 1} of ${ROUNDS}: tl on ${images} images, onnx engine`);
    onnxRuns.push(isolated('wasm', options(`run-whole-onnx-${round}`, { engine: 'onnx' })));
    log(`whole fine-tune, round ${round + 1} of ${ROUNDS}: PyTorch on ${images} images, frozen prefix cached`);
    const c = torch(['finetune', '--model', 'mobilenet_v2', '--data', data, '--epochs', '10', '--batch-size', '16', '--lr', '0.0001', '--cache-prefix']);
    if (c) cachedRuns.push(c);
  }
  const bySeconds = (a: IsolatedRun, b: IsolatedRun) => a.seconds - b.seconds;
  const o = [...onnxRuns].sort(bySeconds)[Math.floor(onnxRuns.length / 2)]!;
  const cached = cachedRuns.length === ROUNDS ? [...cachedRuns].sort((a, b) => (a['seconds'] as number) - (b['seconds'] as number))[Math.floor(ROUNDS / 2)]! : null;
  const cachedRatio = cached ? median(cachedRuns.map((c, i) => (c['seconds'] as number) / onnxRuns[i]!.seconds)) : null;
  log(`whole fine-tune: tl on ${images} images, tfjs engine`);
  const r = isolated('wasm', options('run-whole', { engine: 'tfjs' }));
  log(`whole fine-tune: PyTorch on ${images} images`);
  const ref = torch(['finetune', '--model', 'mobilenet_v2', '--data', data, '--epochs', '10', '--batch-size', '16', '--lr', '0.0001']);
  const torchSeconds = ref ? (ref['seconds'] as number) : null;
  const torchHistory = ref ? (ref['history'] as { loss: number; val_accuracy: number }[]) : [];
  const cachedHistory = cached ? (cached['history'] as { loss: number; val_accuracy: number }[]) : [];
  addBreakdown(`whole fine-tune, onnx engine (the median run)`, o, cached ? (cached['max_rss_bytes'] as number) : null);
  addBreakdown(`whole fine-tune, tfjs engine`, r, cached ? (cached['max_rss_bytes'] as number) : null);
  const epochs = (r: IsolatedRun) => `${r.frozenPass ? `frozen part once over ${r.frozenPass.images} images in ${fmt(r.frozenPass.seconds)} s, then ` : ''}${fmt(r.history.reduce((a, e) => a + e.seconds, 0) / Math.max(1, r.history.length))} s per epoch`;
  const result = (run: IsolatedRun, what: string) => `${lastLoss(run, what)} / ${fmt(100 * (run.history.at(-1)!.val_accuracy ?? 0))}%`;
  const rows: (string | number)[][] = [
    [`tl, onnx engine (frozen part and train step on ONNX Runtime, ${cores} threads)`, fmt(o.seconds), epochs(o), result(o, 'the whole fine-tune on the onnx engine'), gib(o.maxRssBytes)],
    [`tl, tfjs engine (tfjs wasm, ${cores} workers)`, fmt(r.seconds), epochs(r), result(r, 'the whole fine-tune on the tfjs engine'), gib(r.maxRssBytes)],
    ...(ref ? [[`PyTorch ${String(ref['torch'])} CPU, ${String(ref['threads'])} threads, standard loop (every step runs the whole network)`, fmt(torchSeconds!), `${fmt(torchSeconds! / 10)} s per epoch on average`, `${torchHistory.at(-1)!.loss.toFixed(3)} / ${fmt(100 * torchHistory.at(-1)!.val_accuracy)}%`, gib(ref['max_rss_bytes'] as number)]] : [['PyTorch', 'not measured', '-', '-', '-']]),
    ...(cached ? [[`PyTorch ${String(cached['torch'])} CPU, ${String(cached['threads'])} threads, frozen prefix cached (the same work as tl's cache)`, fmt(cached['seconds'] as number), `${fmt(cached['prefix_seconds'] as number)} s prefix pass, then ${fmt(((cached['seconds'] as number) - (cached['prefix_seconds'] as number)) / 10)} s per epoch`, `${cachedHistory.at(-1)!.loss.toFixed(3)} / ${fmt(100 * cachedHistory.at(-1)!.val_accuracy)}%`, gib(cached['max_rss_bytes'] as number)]] : []),
  ];
  return {
    section: {
      title: `Whole fine-tune: MobileNetV2 --freeze 100, 10 epochs, ${images} images`,
      lines: [
        `Fashion-MNIST (Debian \`dataset-fashion-mnist\`), ${images} images in 5 classes at 224x224, 70/15/15 split, batch 16, Adam 1e-4, wall time of the fine-tune including data loading and validation, each in its own process. tl on ONNX Runtime and the caching PyTorch loop ran ${ROUNDS} times in turn: their rows are the median runs, and their ratio is the median of the rounds' ratios (${cachedRatio ? `${fmt(cachedRatio, 2)}x` : 'n/a'}, PyTorch's time over tl's). tl starts from \`${model}\` (pretrained weights that install from npm); PyTorch cannot fetch pretrained weights here and starts from random ones, so its time is comparable (the same network and step) but its accuracy is not. tl caches the frozen part's outputs: compare its rows with the caching PyTorch loop, and the standard loop with tl's uncached runs (\`--augment\`), never one with the other. The last column shows that each run learned: the last epoch's training loss (chance is ln 5 = 1.609) and validation accuracy (chance is 20%).`,
        '',
        ...table(['engine', 'seconds', 'epochs', 'last train loss / val accuracy', 'peak resident (GiB)'], rows),
      ],
    },
    tl: r.seconds,
    tlOnnx: o.seconds,
    torch: torchSeconds,
    torchCached: cached ? (cached['seconds'] as number) : null,
    cachedRatio,
    memory: { onnx: o.maxRssBytes, tfjs: r.maxRssBytes, ...(ref ? { torch: ref['max_rss_bytes'] as number } : {}), ...(cached ? { torchCached: cached['max_rss_bytes'] as number } : {}) },
  };
}

/** Pure inference throughput (no decoding) of the pooled features: ONNX Runtime, tfjs wasm, PyTorch. */
async function extractionBench(tf: Tf, quick: boolean): Promise<{ section: Section; rates: Record<string, number> }> {
  const rows: (string | number)[][] = [];
  const rates: Record<string, number> = {};
  const batch = 16;
  for (const name of ['mobilenet_v2', 'resnet50', 'vgg16']) {
    log(`extraction: ${name}`);
    const im = await loadFeatureModel(tf, name, { weights: 'random', seed: 1 });
    const x = new Float32Array(batch * 224 * 224 * 3).map((_, i) => ((i * 2654435761) % 1000) / 500 - 1);
    const onnxBatches = quick ? 3 : name === 'mobilenet_v2' ? 20 : 8;
    const session = await OnnxSession.open(exportOnnx(im.model), { threads: availableParallelism() });
    await session.run([{ data: x, shape: [batch, 224, 224, 3] }]);
    let t0 = performance.now();
    for (let i = 0; i < onnxBatches; i++) await session.run([{ data: x, shape: [batch, 224, 224, 3] }]);
    rates[`${name}:onnx`] = (onnxBatches * batch) / ((performance.now() - t0) / 1000);
    await session.close();
    const tfjsBatches = quick ? 1 : 2;
    const input = tf.tensor4d(x, [batch, 224, 224, 3]);
    tf.tidy(() => im.model.predict(input));
    t0 = performance.now();
    for (let i = 0; i < tfjsBatches; i++) tf.tidy(() => (im.model.predict(input) as ReturnType<Tf['tensor']>).dataSync());
    rates[`${name}:tfjs`] = (tfjsBatches * batch) / ((performance.now() - t0) / 1000);
    input.dispose();
    im.dispose();
    const ref = torch(['extract', '--model', name, '--batch-size', String(batch), '--steps', quick ? '2' : name === 'mobilenet_v2' ? '10' : '4']);
    if (ref) rates[`${name}:torch`] = ref['img_per_s'] as number;
    const ratio = (k: string) => (rates[`${name}:torch`] ? `${fmt(rates[k]! / rates[`${name}:torch`]!, 2)}x` : '-');
    rows.push([name, fmt(rates[`${name}:onnx`]!), fmt(rates[`${name}:tfjs`]!), ref ? fmt(rates[`${name}:torch`]!) : 'not measured', ratio(`${name}:onnx`), ratio(`${name}:tfjs`)]);
  }
  return {
    section: {
      title: 'Feature extraction (batch 16, 224x224, pooled features, random weights, no decoding)',
      lines: [
        `ONNX Runtime runs the graph \`tl\` exports (BatchNorm folded), with ${availableParallelism()} intra-op threads; tfjs runs the same LayersModel on the wasm backend (one thread); PyTorch runs torchvision's equivalent in \`eval()\` under \`no_grad\` with 2 threads.`,
        '',
        ...table(['model', 'tl, onnx engine (img/s)', 'tl, tfjs wasm (img/s)', 'PyTorch CPU (img/s)', 'onnx / PyTorch', 'tfjs / PyTorch'], rows),
      ],
    },
    rates,
  };
}

/** `tl extract` over many small images: throughput and resident memory as the run goes on. */
async function streamingBench(tf: Tf, work: string, count: number): Promise<Section> {
  const dir = join(work, 'many');
  log(`streaming extraction: writing ${count} images`);
  const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 90, g: 160, b: 40 } } }).png().toBuffer();
  for (let c = 0; c < 2; c++) {
    mkdirSync(join(dir, `c${c}`), { recursive: true });
    for (let i = 0; i < count / 2; i++) writeFileSync(join(dir, `c${c}`, `${i}.png`), png);
  }
  const samples: [number, number][] = [];
  const every = Math.max(1, Math.floor(count / 10));
  let next = every;
  log(`streaming extraction: ${count} images`);
  const t0 = performance.now();
  const r = await extract(tf, {
    // The two folders as plain inputs: one image copied 10,000 times is not a dataset (the same bytes under two classes).
    inputs: [join(dir, 'c0'), join(dir, 'c1')], model: 'mobilenet_v2_035', out: join(work, 'many.npy'), format: 'npy', batchSize: 64, workers: 1, backend: 'wasm', engine: 'onnx',
    val: 0.15, test: 0.15, seed: 42, resize: 'squash', maxPixels: 1e8, inputSize: 32, weights: 'random',
    onProgress: (done) => {
      if (done >= next) {
        samples.push([done, process.memoryUsage().rss]);
        next += every;
      }
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const mib = (b: number) => fmt(b / 2 ** 20, 0);
  const first = samples[0]![1];
  const growth = Math.max(...samples.map(([, rss]) => rss)) - first;
  return {
    title: `Streaming extraction: ${count.toLocaleString('en')} images`,
    lines: [
      `\`tl extract\` of a two-class folder of ${count.toLocaleString('en')} 32x32 PNGs (MobileNetV2 0.35 at 32x32, onnx engine, batch 64), writing .npy + index: ${r.count.toLocaleString('en')} images in ${fmt(seconds)} s (${fmt(r.count / seconds)} img/s including scanning and decoding). Resident memory after each tenth of the images (MiB): ${samples.map(([, rss]) => mib(rss)).join(', ')}; it grew by ${mib(growth)} MiB after the first tenth. The scan keeps one small record per file; pixels and features are not kept.`,
    ],
  };
}

/** Each configuration's peak resident memory over PyTorch's, onnx engine and tfjs with every worker. */
function memoryRatios(memory: Record<string, number>, cores: number): string {
  const configs = ['mobilenet_v2:100', 'resnet50:140', 'mobilenet_v2:0'];
  const r = (a?: number, b?: number) => (a && b ? `${fmt(a / b, 2)}x` : 'n/a');
  return configs.map((c) => `${c.replace(':', ' --freeze ')} ${r(memory[`${c}:onnx:${cores}`], memory[`${c}:torch`])} on onnx${memory[`${c}:wasm:${cores}`] ? `, ${r(memory[`${c}:wasm:${cores}`], memory[`${c}:torch`])} on tfjs` : ''}`).join('; ');
}

/**
 * The current PyTorch release from PyPI, in a virtual environment the bench makes for itself (`TL_BENCH_TORCH_VENV`,
 * default `~/.cache/tl-bench/torch-venv`; about 5 GiB, as PyPI's Linux wheel brings its CUDA libraries): its python, or
 * null with a message where it cannot be installed. It is never a dependency of tl or of its tests.
 */
function pypiTorch(): string | null {
  const venv = process.env['TL_BENCH_TORCH_VENV'] ?? join(homedir(), '.cache', 'tl-bench', 'torch-venv');
  const python = join(venv, 'bin', 'python');
  const works = () => spawnSync(python, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0;
  if (existsSync(python) && works()) return python;
  log(`installing the current PyTorch from PyPI into ${venv} (once)`);
  const made = spawnSync(PYTHON, ['-m', 'venv', venv], { encoding: 'utf8' });
  const pip = made.status === 0 ? spawnSync(python, ['-m', 'pip', 'install', '-q', 'torch', 'torchvision'], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] }) : made;
  if (pip.status !== 0 || !works()) {
    log(`PyPI's PyTorch unavailable: ${(pip.stderr || pip.error?.message || 'python3 -m venv failed').trim().split('\n').pop()}`);
    return null;
  }
  return python;
}

/**
 * `--profile`: where one cached train step spends its time, for MobileNetV2 --freeze 100 and ResNet50 --freeze 140 at
 * batch 16: tl's step (ONNX Runtime's profiler per op type) beside the caching PyTorch loop's step on the same tail
 * (torch.profiler's self CPU time per operator), and the step's achieved GFLOP/s against the machine's matrix-product
 * peak (the best of ONNX Runtime's and PyTorch's GEMM at large and at the tail's own shapes).
 */
async function profileSection(tf: Tf, cores: number): Promise<Section & { ratios: string[]; uncached: string[] }> {
  const { profileStep, gemmPeak, openStepTimer } = await import('./step-profile.js');
  const shapes: [number, number, number][] = [[1024, 1024, 1024], [2048, 2048, 2048], [784, 4608, 512], [784, 576, 96]];
  const ortGemm = await gemmPeak(shapes, { threads: cores });
  // The peers: Debian's PyTorch and the current release from PyPI, each running bench/torch_reference.py.
  const pythons = [{ label: 'Debian', python: PYTHON }, { label: 'PyPI', python: pypiTorch() }]
    .map((p) => ({ ...p, version: p.python ? (torch(['gemm', '--steps', '1', '--shapes', '8,8,8'], p.python)?.['torch'] as string | undefined) : undefined }))
    .filter((p): p is { label: string; python: string; version: string } => p.python !== null && p.version !== undefined);
  const gemmOf = (python: string) => (torch(['gemm', '--threads', String(cores), '--steps', '10', '--shapes', shapes.map((s) => s.join(',')).join(';')], python)?.['gemm'] ?? null) as { shape: number[]; gflops: number }[] | null;
  const torchGemm = pythons.map((p) => gemmOf(p.python));
  const peak = Math.max(...ortGemm.map((g) => g.gflops), ...torchGemm.flatMap((list) => (list ?? []).map((g) => g.gflops)));
  const lines: string[] = [
    `Matrix products (GFLOP/s, best of 10, ${cores} threads; ONNX Runtime's MatMul with both operands fed at run time, as the train step's weights are):`,
    '',
    ...table(['M x K x N', 'ONNX Runtime', ...pythons.map((p) => `PyTorch ${p.version}`)], shapes.map((shape, i) => [shape.join(' x '), fmt(ortGemm[i]!.gflops, 0), ...torchGemm.map((list) => (list ? fmt(list[i]!.gflops, 0) : 'n/a'))])),
    '',
    `The machine's measured peak below is the best of these: ${fmt(peak, 0)} GFLOP/s. A step's FLOPs are 3 x the forward multiply-adds x 2 of its convolutions and dense layers (forward, weight gradient, input gradient); elementwise work is not counted.`,
    '',
  ];
  const rows: (string | number)[][] = [];
  const details: string[] = [];
  const ratios: string[] = [];
  const uncached: string[] = [];
  const ROUNDS = 3;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [model, freeze] of [['mobilenet_v2', 100], ['resnet50', 140]] as const) {
    // tl's step as training runs it (a chunk of steps per run where the rule takes one), timed in rounds that
    // alternate with each peer's step, so that both see the same machine; the ratio is the median of the rounds'.
    const timer = await openStepTimer(tf, model, freeze, { threads: cores });
    const k = timer.chunk;
    type Peer = { ms_per_step: number; torch: string; ops?: { op: string; ms: number; calls: number }[]; profiled_ms_total?: number };
    const tlTimes: number[] = [];
    const peerTimes: number[][] = pythons.map(() => []);
    // The uncached step (every step with --augment): the frozen part's forward pass and the step, against PyTorch's
    // standard step (the whole network), in the same rounds.
    const uncachedTimes: number[] = [];
    const standardTimes: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const step = await timer.msPerStep(Math.max(8, 2 * k));
      tlTimes.push(step);
      uncachedTimes.push(step + (await timer.frozenMsPerBatch(4)));
      pythons.forEach((p, i) => {
        const r = torch(['tailstep', '--model', model, '--threads', String(cores), '--steps', '12'], p.python) as Peer | null;
        if (r) peerTimes[i]!.push(r.ms_per_step);
      });
      const standard = torch(['step', '--model', model, '--batch-size', '16', '--threads', String(cores), '--steps', '4']);
      if (standard) standardTimes.push((1000 * 16) / (standard['img_per_s'] as number));
    }
    await timer.close();
    if (standardTimes.length === ROUNDS) uncached.push(`${model === 'mobilenet_v2' ? 'MobileNetV2' : 'ResNet50'} --freeze ${freeze} ${fmt(median(standardTimes.map((t, r) => t / uncachedTimes[r]!)), 2)}x (${fmt(median(uncachedTimes))} against ${fmt(median(standardTimes))} ms per batch of 16)`);
    const tlMs = median(tlTimes);
    const ratioOf = (i: number) => (peerTimes[i]!.length === ROUNDS ? median(peerTimes[i]!.map((t, r) => t / tlTimes[r]!)) : null);
    const plain = await profileStep(tf, model, freeze, { steps: 12, threads: cores });
    const profiled = await profileStep(tf, model, freeze, { steps: 4, threads: cores, profile: true });
    const peers = pythons.map((p) => torch(['tailstep', '--model', model, '--threads', String(cores), '--steps', '12', '--profile'], p.python) as Peer | null);
    const gflops = timer.stepFlops / tlMs / 1e6;
    ratios.push(`${model} --freeze ${freeze} ${pythons.map((p, i) => (ratioOf(i) !== null ? `${fmt(ratioOf(i)!, 2)}x (PyTorch ${p.version})` : null)).filter((x) => x !== null).join(', ') || 'n/a'}, at ${fmt((100 * gflops) / peak, 0)}% of the GEMM peak`);
    rows.push([`${model} --freeze ${freeze}`, `${fmt(tlMs)} (${k} per run; one per run, timed apart: ${fmt(plain.msPerStep)})`, fmt(gflops, 0), `${fmt((100 * gflops) / peak, 0)}%`, `${plain.nodes} (${plain.lowering})`, ...pythons.flatMap((_, i) => (peerTimes[i]!.length === ROUNDS ? [fmt(median(peerTimes[i]!)), `${fmt(ratioOf(i)!, 2)}x`, fmt(timer.stepFlops / median(peerTimes[i]!) / 1e6, 0)] : ['n/a', 'n/a', 'n/a'])), fmt(timer.stepFlops / 1e9, 1)]);
    const kernels = profiled.ops.reduce((a, o) => a + o.ms, 0);
    details.push(
      `### ${model} --freeze ${freeze}: tl's step per operator type`,
      '',
      `ONNX Runtime's profiler, ${profiled.nodes} nodes; kernels sum to ${fmt(kernels)} ms of ${fmt(profiled.msPerStep)} ms per profiled step (the rest is the run's own overhead between kernels and the profiler's). MiB: bytes each op type writes per step.`,
      '',
      ...table(['op', 'ms per step', 'share', 'calls', 'MiB written'], profiled.ops.slice(0, 12).map((o) => [o.op, fmt(o.ms, 2), `${fmt(100 * o.share)}%`, fmt(o.calls, 0), fmt(o.bytes / 2 ** 20, 0)])),
      '',
      '*Slowest nodes:*',
      '',
      ...table(['op', 'shapes', 'ms per step'], profiled.nodes_.slice(0, 8).map((n) => [n.op, `\`${n.shape}\``, fmt(n.ms, 2)])),
      '',
    );
    for (const peer of peers) {
      if (!peer?.ops) continue;
      details.push(
        `### ${model} --freeze ${freeze}: the caching PyTorch loop's step per operator (torch ${peer.torch})`,
        '',
        `torch.profiler, self CPU time; the operators sum to ${fmt(peer.profiled_ms_total ?? 0)} ms per step.`,
        '',
        ...table(['operator', 'ms per step', 'calls'], peer.ops.slice(0, 12).map((o) => [`\`${o.op}\``, fmt(o.ms, 2), fmt(o.calls, 0)])),
        '',
      );
    }
  }
  return {
    ratios,
    uncached,
    title: 'Where the train step spends its time',
    lines: [
      ...lines,
      `The cached step (batch 16, Adam, BatchNorm in inference mode, random weights; the boundary tensors fed as the feature cache feeds them) against the caching PyTorch loop's step on the same tail (\`bench/torch_reference.py tailstep\`), timed in ${ROUNDS} rounds that alternate tl and each PyTorch (medians; the speed ratio is the median of the rounds' ratios). tl runs as training runs it: a chunk of steps per ONNX Runtime run (an ONNX Loop whose carried values are the weights and Adam's slots) where the step carries at most 64 MiB, one step per run otherwise. Nodes: the step graph's, and how its depthwise layers are lowered (nchwc: ONNX Runtime's blocked-channel kernels; gather: gathered taps).`,
      '',
      `The uncached step (the frozen part's forward pass on ONNX Runtime, then the step; as every step runs with \`--augment\`) against PyTorch ${pythons[0]?.version ?? ''}'s standard step, which runs the whole network, in the same rounds (PyTorch's time / tl's): ${uncached.join(', ') || 'n/a'}.`,
      '',
      ...table(['tail', 'tl ms/step', 'tl GFLOP/s', 'of peak', 'tl graph nodes (lowering)', ...pythons.flatMap((p) => [`PyTorch ${p.version} ms/step`, `tl speed vs ${p.version}`, `${p.version} GFLOP/s`]), 'GFLOP per step'], rows),
      '',
      ...details,
    ],
  };
}

/**
 * `--choices`: only the section on tl's own choices (slow: two sweeps of fine-tunes), written into the existing
 * BENCHMARKS.md in place of that section's previous run, with its own date and machine.
 */
async function runChoices(out: string): Promise<void> {
  const { tf, info } = await loadBackend({ choice: 'wasm' });
  const work = mkdtempSync(join(tmpdir(), 'tl-bench-'));
  try {
    const cores = availableParallelism();
    const section = await choicesBench(tf, info, work, join(ROOT, 'datasets', 'fashion-mnist-sample'), cores);
    await writeSection(out, section, 'npm run bench -- --choices', cores);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The GPU check: `--gpu` runs it here (every ONNX Runtime provider that opens, PyTorch on CUDA where it has it);
 * `--gpu-bundle DIR` writes what a lent machine without Node.js runs with bench/gpu-run.sh; `--gpu-report FILE`
 * writes the section from the JSON that run returned.
 */
async function gpuMode(values: { gpu?: boolean; 'gpu-bundle'?: string; 'gpu-report'?: string; out: string }): Promise<void> {
  const { bundleGpuCheck, gpuSection, prepareGpuCheck, readGpuResult, runGpuCheck } = await import('./gpu.js');
  const cores = availableParallelism();
  if (values['gpu-report']) {
    const file = values['gpu-report'];
    const result = readGpuResult(file);
    const gpu = existsSync(join(dirname(file), 'gpu-machine.txt')) ? readFileSync(join(dirname(file), 'gpu-machine.txt'), 'utf8').trim() : 'GPU not named';
    const section = gpuSection(result);
    return writeSection(values.out, section, 'bash bench/gpu-run.sh', cores, `Measured by \`bash bench/gpu-run.sh\` on ${result.date.slice(0, 10)}: ${gpu}; ${result.cpu}, ${result.cores} cores, Node ${result.node}.`);
  }
  const { tf } = await loadBackend({ choice: 'wasm' });
  if (values['gpu-bundle']) {
    await bundleGpuCheck(tf, values['gpu-bundle']);
    log(`wrote the GPU check's bundle to ${values['gpu-bundle']}: on the lent machine, \`bash bench/gpu-run.sh ${values['gpu-bundle']} OUT\`, then \`npm run bench -- --gpu-report OUT/gpu-check.json\` here`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tl-gpu-'));
  try {
    await prepareGpuCheck(tf, dir);
    const torchCuda = spawnSync(PYTHON, ['-c', 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)']).status === 0;
    const result = runGpuCheck(dir, torchCuda ? { python: PYTHON, device: 'cuda' } : {});
    await writeSection(values.out, gpuSection(result), 'npm run bench -- --gpu', cores);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, choices: { type: 'boolean', default: false }, ship: { type: 'boolean', default: false }, keras: { type: 'boolean', default: false }, 'head-epochs': { type: 'boolean', default: false }, 'multi-label': { type: 'boolean', default: false }, mixup: { type: 'boolean', default: false }, rates: { type: 'boolean', default: false }, views: { type: 'boolean', default: false }, 'near-duplicates': { type: 'boolean', default: false }, augment: { type: 'boolean', default: false }, 'keep-choices': { type: 'boolean', default: false }, profile: { type: 'boolean', default: false }, out: { type: 'string', default: join(ROOT, 'BENCHMARKS.md') }, one: { type: 'string' }, gpu: { type: 'boolean', default: false }, 'gpu-bundle': { type: 'string' }, 'gpu-report': { type: 'string' } } });
  if (values.one !== undefined) return runOne(values.one);
  if (values.gpu || values['gpu-bundle'] || values['gpu-report']) return gpuMode(values);
  if (values.choices) return runChoices(values.out);
  // Sections measured alone, each in a work folder of its own, written in place.
  const alone: [boolean | undefined, string, (work: string) => Promise<Section>][] = [
    [values.augment, 'augment', async (work) => (await import('./augment.js')).augmentBench(ROOT, work)],
    [values['head-epochs'], 'head-epochs', async (work) => (await import('./head-epochs.js')).headEpochsBench(ROOT, work)],
    [values.keras, 'keras', async (work) => (await import('./keras-parity.js')).kerasParityBench(ROOT, work)],
    [values['multi-label'], 'multi-label', async (work) => (await import('./multilabel.js')).multiLabelBench(ROOT, work)],
    [values.mixup, 'mixup', async (work) => (await import('./mixup.js')).mixupBench(ROOT, work)],
    [values.rates, 'rates', async (work) => (await import('./rates.js')).ratesBench(ROOT, work)],
    [values.views, 'views', async (work) => (await import('./views.js')).viewsBench(ROOT, work)],
    [values['near-duplicates'], 'near-duplicates', async (work) => (await import('./near-duplicates.js')).nearDuplicatesBench(ROOT, work)],
    [values.ship, 'ship', async (work) => (await import('./ship.js')).shipBench(ROOT, work, availableParallelism())],
  ];
  for (const [asked, flag, measure] of alone) {
    if (!asked) continue;
    const work = mkdtempSync(join(tmpdir(), 'tl-bench-'));
    try {
      return await writeSection(values.out, await measure(work), `npm run bench -- --${flag}`, availableParallelism());
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  if (values.profile) {
    const { tf } = await loadBackend({ choice: 'wasm' });
    return writeSection(values.out, await profileSection(tf, availableParallelism()), 'npm run bench -- --profile', availableParallelism());
  }
  const quick = values.quick;
  const { tf, info } = await loadBackend({ choice: 'wasm' });
  const work = mkdtempSync(join(tmpdir(), 'tl-bench-'));
  try {
    const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
    debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
    if (idx.path === null) throw new Error(`the benchmark needs Fashion-MNIST: ${idx.reason}`);
    const src = dirname(idx.path);
    const images = quick ? 100 : 500;
    const data = join(work, 'fashion');
    await writeFashionMnist({ src, out: data, perClass: images / 5, classes: [0, 1, 7, 8, 9], split: 'train' });
    await writeFashionMnist({ src, out: join(work, 'tiny'), perClass: 8, classes: [0, 1], split: 'train' });
    const throughputData = join(work, 'throughput');
    await writeFashionMnist({ src, out: throughputData, perClass: quick ? 16 : 32, classes: [0, 1], split: 'train' });

    const sections: Section[] = [];
    const extraction = await extractionBench(tf, quick);
    sections.push(extraction.section);
    sections.push(await streamingBench(tf, work, quick ? 10_000 : 100_000));
    sections.push(await decodeBench(tf, work, quick ? 60 : 240));
    const training = await trainingBench(work, throughputData, quick);
    sections.push(training.section);
    const whole = await finetuneBench(work, data, images, 'mobilenet_v2.nsfwjs');
    sections.push(whole.section);
    if (!quick && !values['keep-choices']) sections.push(await choicesBench(tf, info, work, join(ROOT, 'datasets', 'fashion-mnist-sample'), availableParallelism()));
    if (!quick) sections.push(await (await import('./ship.js')).shipBench(ROOT, work, availableParallelism()));
    sections.push(memorySection());
    const profile = await profileSection(tf, availableParallelism());
    sections.push(profile);

    const s = training.steps;
    const cores = availableParallelism();
    const ratio = (a?: number, b?: number) => (a && b ? `${fmt(a / b, 2)}x` : 'n/a');
    const e = extraction.rates;
    const summary = [
      `- Extraction on ONNX Runtime vs PyTorch: MobileNetV2 ${ratio(e['mobilenet_v2:onnx'], e['mobilenet_v2:torch'])} (goal >= 3x), ResNet50 ${ratio(e['resnet50:onnx'], e['resnet50:torch'])} (goal >= 1.5x), VGG16 ${ratio(e['vgg16:onnx'], e['vgg16:torch'])}; tfjs wasm: ${ratio(e['mobilenet_v2:tfjs'], e['mobilenet_v2:torch'])}, ${ratio(e['resnet50:tfjs'], e['resnet50:torch'])}, ${ratio(e['vgg16:tfjs'], e['vgg16:torch'])}.`,
      `- Whole 10-epoch fine-tune against the PyTorch loop that caches the frozen prefix as tl does (PyTorch's time / tl's, median of 3 alternating rounds): ${whole.cachedRatio ? `${fmt(whole.cachedRatio, 2)}x on the onnx engine (${fmt(whole.tlOnnx)} s vs ${fmt(whole.torchCached!)} s)` : 'n/a'}. Goal: >= 1.2x. Against PyTorch's standard loop, which runs the whole network every step (not the same work): ${whole.torch ? `${fmt(whole.torch / whole.tlOnnx, 2)}x` : 'n/a'} on the onnx engine (goal: >= 3x), ${whole.torch ? `${fmt(whole.torch / whole.tl, 2)}x` : 'n/a'} on the tfjs engine (${fmt(whole.tl)} s).`,
      `- Cached training step (the tail alone) vs the caching PyTorch loop's step on the same tail (PyTorch's time / tl's): ${profile.ratios.join('; ')}. Goal: >= 1x.`,
      `- Uncached step (the frozen part's forward pass and the tail's step, as every step is with --augment; both warm, no decoding) vs PyTorch's standard step, which also runs the whole network, in the profile section's alternating rounds: ${profile.uncached.join(', ') || 'n/a'} on the onnx engine. Goal: >= 1.5x.`,
      `- Peak resident memory vs PyTorch's for the same training step (goal: at most PyTorch's + 30%, i.e. <= 1.30x): ${memoryRatios(training.memory, cores)}; whole fine-tune ${ratio(whole.memory['onnx'], whole.memory['torchCached'])} on the onnx engine against the caching loop (the same work), ${ratio(whole.memory['tfjs'], whole.memory['torchCached'])} on tfjs.`,
      `- Training step with everything trainable (MobileNetV2 --freeze 0) vs PyTorch's: ${ratio(s[`mobilenet_v2:0:onnx:${cores}`], s['mobilenet_v2:0:torch'])} on the onnx engine. Goal: >= 1x.`,
    ];
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const header = [
      '# Benchmarks',
      '',
      `Measured by \`npm run bench${quick ? ' -- --quick' : ''}\` on ${new Date().toISOString().slice(0, 10)}: ${cpu} (${vectorExtensions()}), ${cores} cores, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}, TensorFlow.js ${tf.version.tfjs} (${info.label}). All figures come from this one run, except a section that gives its own date (\`npm run bench -- --choices\` re-measures that one alone); the machine is shared and noisy, so compare ratios within a run.`,
      '',
      '## Summary',
      '',
      ...summary,
      '',
    ];
    sections.push({
      title: 'Where tl falls short, and why',
      lines: [
        `Both sides' cached steps are bound by the same matrix products at about the same GFLOP/s (the GEMM table in the profile section): tl compiles the trainable tail into one ONNX graph per phase (forward, gradients, optimizer update) and runs it on ONNX Runtime's CPU library with every core. Its depthwise convolutions run on ONNX Runtime's blocked-channel (NCHWc) CPU kernels, with the weights fed at run time, where the CPU has them (x86-64 with AVX2 or AVX-512); elsewhere, and on GPU providers, tl gathers their taps into one tensor and multiplies and reduces it, a pass over nine times the activation, several times slower.`,
        '',
        `PyTorch updates weights and optimizer slots in place; an ONNX graph cannot: each step's updated weights and Adam slots are new tensors, copied out of ONNX Runtime into JavaScript, so tl holds them two to three times over (the values a step started from, the new ones, and copies awaiting garbage collection). For a tail that carries little (MobileNetV2 --freeze 100: 22 MB) this is noise; for ResNet50's conv5 (15M parameters, 180 MB with Adam's two slots) it is most of the gap in peak memory.`,
        '',
        `The frozen part runs once over the images before training, as the caching PyTorch loop runs its prefix once; ONNX Runtime makes that pass ${ratio(e['mobilenet_v2:onnx'], e['mobilenet_v2:tfjs'])} faster than tfjs (MobileNetV2 extraction). The tfjs engine trains on TensorFlow.js's wasm backend, one thread per replica, with gradients built from forward kernels.`,
      ],
    });
    const body = sections.flatMap((sec) => [`## ${sec.title}`, '', ...sec.lines, '']);
    // --keep-choices: the previous run's section on tl's choices, as it was (it carries its own date).
    const previous = values['keep-choices'] && existsSync(values.out) ? readFileSync(values.out, 'utf8') : '';
    const kept = previous.indexOf('## Choosing what to transfer');
    const keptText = kept < 0 ? [] : [previous.slice(kept, previous.indexOf('\n## ', kept + 3) < 0 ? undefined : previous.indexOf('\n## ', kept + 3) + 1).trimEnd(), ''];
    await writeFileAtomic(values.out, `${[...header, ...body, ...keptText].join('\n')}`);
    log(`wrote ${values.out}`);
    process.stdout.write(`${summary.join('\n')}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
