// How well `tl data --suspects` finds wrong labels: flip a share of a real dataset's labels (seeded, each to another
// class drawn uniformly), run the suspects finder on the flipped labels (as a --labels CSV file over the same images),
// and compare its list with the flipped images: precision (the share of suspects that were flipped) and recall (the
// share of flipped images it lists), at its own cut-off.
// Usage: node dist/bench/suspects.js --data DIR [--flip 0.05,0.1] [--seed 1] [--input-size N] [--folds 5]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findSuspects } from '../src/audit/suspects.js';
import { loadBackend } from '../src/backend/index.js';
import { scanDataset } from '../src/data/index.js';
import { DEFAULT_MODEL } from '../src/options/shared.js';
import { mixSeed } from '../src/util/random.js';

export interface FlipResult {
  data: string;
  images: number;
  flipped: number;
  suspects: number;
  precision: number;
  recall: number;
  probeAccuracy: number;
  seconds: number;
}

/** Runs the finder on `data` with `share` of its labels flipped. */
export async function flipCheck(data: string, share: number, seed: number, extra: { inputSize?: number; folds?: number; store?: string } = {}): Promise<FlipResult> {
  const { tf, info } = await loadBackend({ choice: 'wasm' });
  const scan = await scanDataset(data);
  const k = scan.classes.length;
  // Which images flip: the `share` with the lowest seeded key; each to another class.
  const keyed = scan.items.map((item, i) => ({ item, key: mixSeed(seed, i, 11) })).sort((a, b) => a.key - b.key);
  const flips = new Map<string, number>();
  keyed.slice(0, Math.round(share * scan.items.length)).forEach(({ item }, r) => flips.set(item.rel, (item.label + 1 + (mixSeed(seed, r, 13) % (k - 1))) % k));
  const dir = mkdtempSync(join(tmpdir(), 'tl-suspects-'));
  try {
    const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const rows = scan.items.map((item) => `${quote(item.rel)},${quote(scan.classes[flips.get(item.rel) ?? item.label]!)}`);
    const labels = join(dir, 'labels.csv');
    writeFileSync(labels, `path,label\n${rows.join('\n')}\n`);
    const result = await findSuspects(tf, {
      data, labels: { file: labels }, model: DEFAULT_MODEL, ...(extra.inputSize ? { inputSize: extra.inputSize } : {}), batchSize: 32, workers: 1, backend: info.name, engine: 'onnx',
      store: extra.store ?? join(dir, 'store'), resize: 'center-crop', maxPixels: 1e8, folds: extra.folds ?? 5, seed,
    });
    const found = result.suspects.filter((s) => flips.has(s.rel)).length;
    return { data, images: result.images, flipped: flips.size, suspects: result.suspects.length, precision: result.suspects.length ? found / result.suspects.length : 0, recall: flips.size ? found / flips.size : 0, probeAccuracy: result.probeAccuracy, seconds: result.seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { data: { type: 'string', multiple: true }, flip: { type: 'string', default: '0.05,0.1' }, seed: { type: 'string', default: '1' }, 'input-size': { type: 'string' }, folds: { type: 'string', default: '5' } } });
  if (!values.data?.length) throw new Error('--data DIR is required');
  console.log('| dataset | images | flipped | suspects | precision | recall | probe accuracy (flipped labels) | seconds |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const data of values.data) {
    for (const share of values.flip.split(',').map(Number)) {
      const r = await flipCheck(data, share, Number(values.seed), { ...(values['input-size'] ? { inputSize: Number(values['input-size']) } : {}), folds: Number(values.folds) });
      console.log(`| ${data} (${Math.round(share * 100)}% flipped) | ${r.images} | ${r.flipped} | ${r.suspects} | ${r.precision.toFixed(3)} | ${r.recall.toFixed(3)} | ${r.probeAccuracy.toFixed(3)} | ${r.seconds.toFixed(0)} |`);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
