// `npm run bench -- --keras`: Keras parity. The same MobileNetV2 weights (nsfwjs's), the same images (as tl decodes
// them), the same split (a pre-split Fashion-MNIST folder) and the same options (head, --freeze 100, Adam at 1e-4,
// batch 16, 3 epochs, dropout 0.2, BatchNorm frozen, the best validation loss's weights kept) in tl and in Keras 3 on
// TensorFlow CPU (PyPI, in a virtual environment of its own; bench/keras_reference.py), over 3 seeds: per-epoch
// training loss and validation accuracy, and the final test accuracy.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { loadBackend } from '../src/backend/index.js';
import { ImageSource, scanDataset } from '../src/data/index.js';
import { resolveModel } from '../src/weights/resolve.js';
import { writeFashionMnist } from '../scripts/fashion-mnist.js';
import { debianFile } from '../scripts/debian.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const PYTHON = '/usr/bin/python3';
const SEEDS = [1, 2, 3];
const OPTIONS = { freeze: 100, epochs: 3, batchSize: 16, lr: 1e-4, dropout: 0.2 };

/** A .npy file of `descr` ('|u1', '<i4', '<f4') values. */
function npy(file: string, descr: string, shape: number[], data: ArrayBufferView): void {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = Buffer.alloc(total, 0x20);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(header, 0);
  header.writeUInt16LE(total - 10, 8);
  header.write(dict, 10, 'latin1');
  header[total - 1] = 0x0a;
  writeFileSync(file, Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** Keras 3 and TensorFlow CPU from PyPI in a virtual environment of the bench's own (`TL_BENCH_KERAS_VENV`). */
function kerasPython(): string | null {
  const venv = process.env['TL_BENCH_KERAS_VENV'] ?? join(homedir(), '.cache', 'tl-bench', 'keras-venv');
  const python = join(venv, 'bin', 'python');
  const works = () => spawnSync(python, ['-c', 'import keras, tensorflow'], { stdio: 'ignore' }).status === 0;
  if (existsSync(python) && works()) return python;
  log(`installing Keras 3 and TensorFlow CPU from PyPI into ${venv} (once)`);
  const made = spawnSync(PYTHON, ['-m', 'venv', venv], { encoding: 'utf8' });
  const pip = made.status === 0 ? spawnSync(python, ['-m', 'pip', 'install', '-q', 'tensorflow-cpu==2.21.0', 'keras==3.15.1'], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] }) : made;
  if (pip.status !== 0 || !works()) {
    log(`Keras unavailable: ${(pip.stderr || 'python3 -m venv failed').trim().split('\n').pop()}`);
    return null;
  }
  return python;
}

/** 200 Fashion-MNIST images of each of 5 classes, pre-split 140 / 30 / 30 so that every seed sees the same split. */
export async function dataset(work: string): Promise<string> {
  const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
  if (idx.path === null) throw new Error(`the Keras parity check needs Fashion-MNIST: ${idx.reason}`);
  const flat = join(work, 'flat');
  await writeFashionMnist({ src: join(idx.path, '..'), out: flat, perClass: 200, classes: [0, 1, 7, 8, 9], split: 'train' });
  const data = join(work, 'fashion-split');
  for (const cls of readdirSync(flat)) {
    readdirSync(join(flat, cls)).sort().forEach((file, i) => {
      const split = i < 140 ? 'train' : i < 170 ? 'val' : 'test';
      mkdirSync(join(data, split, cls), { recursive: true });
      renameSync(join(flat, cls, file), join(data, split, cls, file));
    });
  }
  return data;
}

/** The images as tl decodes them (uint8 NHWC, center-crop to 224) and the backbone's weights as tl holds them. */
export async function dumpForKeras(data: string, out: string, store: string): Promise<void> {
  const { tf } = await loadBackend({ choice: 'wasm' });
  const scan = await scanDataset(data);
  mkdirSync(out, { recursive: true });
  for (const split of ['train', 'val', 'test'] as const) {
    const items = scan.items.filter((i) => i.split === split);
    const source = new ImageSource(items, { size: 224, cacheBytes: 0 });
    const x = new Uint8Array(items.length * 224 * 224 * 3);
    const y = new Int32Array(items.length);
    let n = 0;
    for await (const b of source.batches(items, { batchSize: 32 })) {
      x.set(b.pixels, n * 224 * 224 * 3);
      b.items.forEach((item, i) => (y[n + i] = item.label));
      n += b.items.length;
    }
    npy(join(out, `${split}_x.npy`), '|u1', [n, 224, 224, 3], x.subarray(0, n * 224 * 224 * 3));
    npy(join(out, `${split}_y.npy`), '<i4', [n], y.subarray(0, n));
  }
  writeFileSync(join(out, 'meta.json'), JSON.stringify({ classes: scan.classes, test: scan.items.filter((i) => i.split === 'test').length }));
  const weights = join(out, 'weights');
  mkdirSync(weights, { recursive: true });
  const r = await resolveModel(tf, 'mobilenet_v2.nsfwjs', { top: false, weights: 'pretrained', store });
  const index: Record<string, string[]> = {};
  for (const layer of r.model.layers) {
    if (layer.weights.length === 0) continue;
    index[layer.name] = layer.weights.map((w, i) => {
      const file = `${layer.name}__${i}.npy`;
      npy(join(weights, file), '<f4', w.shape as number[], w.read().dataSync() as Float32Array);
      return file;
    });
  }
  writeFileSync(join(weights, 'index.json'), JSON.stringify(index));
  r.model.dispose();
}

interface Curve {
  trainable: number;
  loss: number[];
  valAccuracy: number[];
  testAccuracy: number;
  seconds: number;
}

function tlRun(root: string, data: string, out: string, seed: number, env: NodeJS.ProcessEnv): Curve {
  const started = performance.now();
  execFileSync(process.execPath, [join(root, 'bin', 'tl.js'), 'finetune', data, '--freeze', String(OPTIONS.freeze), '--epochs', String(OPTIONS.epochs), '--batch-size', String(OPTIONS.batchSize), '--lr', String(OPTIONS.lr), '--dropout', String(OPTIONS.dropout), '--bn', 'frozen', '--optimizer', 'adam', '--calibrate', 'none', '--seed', String(seed), '--out', out, '-q'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  const seconds = (performance.now() - started) / 1000;
  const rows = readFileSync(join(out, 'metrics.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',').map(Number));
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { test?: { accuracy: number }; metrics?: { accuracy: number }; trainableParams: number };
  return { trainable: report.trainableParams, loss: rows.map((r) => r[1]!), valAccuracy: rows.map((r) => r[4]!), testAccuracy: (report.test ?? report.metrics)!.accuracy, seconds };
}

const fmt = (xs: number[], d = 3) => xs.map((v) => v.toFixed(d)).join(', ');
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));

export async function kerasParityBench(root: string, work: string): Promise<Section> {
  const python = kerasPython();
  if (!python) throw new Error('the Keras parity check needs Keras 3 and TensorFlow from PyPI');
  const env = { TL_HOME: join(work, 'home') };
  const data = await dataset(work);
  const dumped = join(work, 'for-keras');
  await dumpForKeras(data, dumped, env.TL_HOME);
  const rows: (string | number)[][] = [];
  const tl: Curve[] = [];
  const keras: Curve[] = [];
  let version = '';
  for (const seed of SEEDS) {
    log(`keras parity: seed ${seed}, tl`);
    tl.push(tlRun(root, data, join(work, `run-${seed}`), seed, env));
    log(`keras parity: seed ${seed}, Keras`);
    const started = performance.now();
    const out = execFileSync(python, [join(root, 'bench', 'keras_reference.py'), '--data', dumped, '--weights', join(dumped, 'weights'), '--freeze', String(OPTIONS.freeze), '--epochs', String(OPTIONS.epochs), '--batch-size', String(OPTIONS.batchSize), '--lr', String(OPTIONS.lr), '--dropout', String(OPTIONS.dropout), '--seed', String(seed)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 24 });
    const k = JSON.parse(out.trim().split('\n').pop()!) as { keras: string; backend: string; layers_loaded: number; trainable_weights: number; loss: number[]; val_accuracy: number[]; test_accuracy: number };
    version = `Keras ${k.keras} on ${k.backend} (${k.layers_loaded} layers' weights loaded from tl's)`;
    keras.push({ trainable: k.trainable_weights, loss: k.loss, valAccuracy: k.val_accuracy, testAccuracy: k.test_accuracy, seconds: (performance.now() - started) / 1000 });
    const [t, kk] = [tl.at(-1)!, keras.at(-1)!];
    rows.push([seed, 'tl', t.trainable, fmt(t.loss, 4), fmt(t.valAccuracy), t.testAccuracy.toFixed(3), t.seconds.toFixed(0)]);
    rows.push([seed, 'Keras', kk.trainable, fmt(kk.loss, 4), fmt(kk.valAccuracy), kk.testAccuracy.toFixed(3), kk.seconds.toFixed(0)]);
  }
  const acc = (c: Curve[]) => c.map((x) => x.testAccuracy);
  const test = (JSON.parse(readFileSync(join(dumped, 'meta.json'), 'utf8')) as { test: number }).test;
  return {
    title: 'Keras parity',
    lines: [
      `The same fine-tune in tl and in ${version}: MobileNetV2 with nsfwjs's weights, 1,000 Fashion-MNIST images of 5 classes pre-split 700 / 150 / ${test} images (the same split for every seed), the images as tl decodes them (224 px, center-crop, x / 255), head and --freeze 100 (layers 100 onward train), Adam at 1e-4, batch 16, 3 epochs, dropout 0.2 before the softmax Dense, every BatchNorm frozen (scale, shift and statistics; inference mode), the weights of the epoch with the lowest validation loss kept, no calibration. The seed sets the head's initialisation, the shuffling and the dropout masks on each side; it cannot make them draw the same numbers. tl's seconds include its start and the frozen part's pass over the images; Keras's its start and the whole network at every step.`,
      '',
      '| seed | trainer | trainable parameters | training loss per epoch | validation accuracy per epoch | test accuracy | seconds |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      `Test accuracy over the ${SEEDS.length} seeds: tl ${mean(acc(tl)).toFixed(3)} ± ${sd(acc(tl)).toFixed(3)}, Keras ${mean(acc(keras)).toFixed(3)} ± ${sd(acc(keras)).toFixed(3)} (mean ± standard deviation; one test image is ${(1 / test).toFixed(3)}).`,
    ],
  };
}
