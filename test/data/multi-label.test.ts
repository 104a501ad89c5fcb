// Several labels per image (--multi-label): from a CSV cell, from repeated rows, from one image under several class
// folders; the iterative split; and a run end to end: its thresholds in every file that carries the model, tl predict
// and tl eval reading them back, and the commands that read one label per image refusing the flag by name.
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type BackendInfo, type Tf } from '../../src/backend/index.js';
import { openDataset, scanDataset, type ImageItem } from '../../src/data/index.js';
import { assignSplits } from '../../src/data/split.js';
import { onnx } from '../../src/onnx/graph.js';
import { finetune } from '../../src/train/finetune.js';
import { computeMultiLabelMetrics } from '../../src/metrics/multilabel.js';
import { startServer } from '../../src/serve/index.js';
import { runTl } from '../helpers/cli.js';
import { collectNotices } from '../helpers/notices.js';
import { finetuneOptions } from '../helpers/options.js';
import { randomArray } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';

const COLOURS: Record<string, [number, number, number]> = { red: [220, 40, 40], green: [40, 200, 60], blue: [50, 70, 230], yellow: [230, 220, 40] };
const NAMES = Object.keys(COLOURS);

/**
 * `n` images whose left half is one colour and right half another (the same colour: one label), with noise, under
 * images/; labels.csv lists each image's colours separated by `sep`.
 */
async function twoColourSet(root: string, n: number, sep = ';', size = 32): Promise<string[][]> {
  mkdirSync(join(root, 'images'), { recursive: true });
  const rows = ['path,labels'];
  const sets: string[][] = [];
  for (let i = 0; i < n; i++) {
    const a = NAMES[i % 4]!;
    const b = NAMES[Math.floor(i / 4) % 4]!;
    const noise = randomArray(size * size * 3, 500 + i);
    const pixels = Buffer.alloc(size * size * 3);
    for (let p = 0; p < size * size; p++) {
      const colour = COLOURS[p % size < size / 2 ? a : b]!;
      for (let ch = 0; ch < 3; ch++) pixels[p * 3 + ch] = Math.max(0, Math.min(255, colour[ch]! + noise[p * 3 + ch]! * 40));
    }
    await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(root, 'images', `img${i}.png`));
    const set = [...new Set([a, b])];
    sets.push(set);
    rows.push(`images/img${i}.png,${set.join(sep)}`);
  }
  writeFileSync(join(root, 'labels.csv'), `${rows.join('\n')}\n`);
  return sets;
}

const names = (scan: { classes: string[] }, item: ImageItem) => item.labels!.map((l) => scan.classes[l]!);

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
let sets: string[][];
beforeAll(async () => {
  ({ tf, info } = await loadBackend({ choice: 'wasm' }));
  sets = await twoColourSet(data, 64);
});

describe('reading several labels per image', () => {
  it("a CSV cell's labels, split by the separator the file uses; a path on several rows has all their labels", async () => {
    const scan = await scanDataset(data, { labels: { file: join(data, 'labels.csv') }, multiLabel: {} });
    expect(scan.classes).toEqual(['blue', 'green', 'red', 'yellow']);
    expect(scan.items.map((i) => names(scan, i).sort())).toEqual(sets.map((s) => [...s].sort()));
    // Items number their label sets: the same set, the same number.
    for (const item of scan.items) expect(scan.labelSets![item.label]).toEqual(item.labels);
    const dir = tempDir();
    await twoColourSet(dir, 8, '|');
    const piped = await scanDataset(dir, { labels: { file: join(dir, 'labels.csv') }, multiLabel: {} });
    expect(piped.items.find((i) => i.rel === 'images/img1.png')!.labels!.map((l) => piped.classes[l])).toEqual(['green', 'red']);
    // Long format: one row per label; a row that adds nothing is listed.
    const long = join(dir, 'long.csv');
    writeFileSync(long, 'path,label\nimages/img0.png,red\nimages/img0.png,blue\nimages/img0.png,red\nimages/img1.png,green\n');
    const rows = await scanDataset(dir, { labels: { file: long }, multiLabel: {} });
    expect(rows.items.map((i) => [i.rel, names(rows, i)])).toEqual([['images/img0.png', ['blue', 'red']], ['images/img1.png', ['green']]]);
    expect(rows.skipped.map((s) => s.reason)).toEqual([`listed again at ${long} line 4 with no new label (first at line 2)`]);
    // A space-separated file names its separator.
    const spaced = join(dir, 'spaced.csv');
    writeFileSync(spaced, 'path,tags\nimages/img0.png,red  blue\nimages/img1.png,green\n');
    const bySpace = await scanDataset(dir, { labels: { file: spaced }, multiLabel: { sep: ' ' } });
    expect(names(bySpace, bySpace.items[0]!)).toEqual(['blue', 'red']);
  });

  it('cells that use both separators are an error; without --multi-label such cells are one class each, with a notice', async () => {
    const dir = tempDir();
    await twoColourSet(dir, 8);
    const both = join(dir, 'both.csv');
    writeFileSync(both, 'path,label\nimages/img0.png,red;blue\nimages/img1.png,green|red\n');
    await expect(scanDataset(dir, { labels: { file: both }, multiLabel: {} })).rejects.toThrow(`${both}: its label cells use both ';' and '|'; which one separates labels is unclear.`);
    const { result, notices } = await collectNotices(() => scanDataset(dir, { labels: { file: join(dir, 'labels.csv') } }));
    expect(result.labelSets).toBeNull();
    expect(result.classes).toContain('green;red');
    expect(notices).toContain(`6 labels in ${join(dir, 'labels.csv')} look like several labels (e.g. 'green;red'): each is read as one class; pass --multi-label to read them as labels of one image`);
  });

  it('class folders: an image under two folders (a copy, or a link) is one image with both labels; single-label refuses it', async () => {
    const root = tempDir();
    for (const c of ['cat', 'dog', 'outdoor']) mkdirSync(join(root, c));
    const src = join(data, 'images');
    for (let i = 0; i < 4; i++) copyFileSync(join(src, `img${i}.png`), join(root, 'cat', `c${i}.png`));
    for (let i = 4; i < 8; i++) copyFileSync(join(src, `img${i}.png`), join(root, 'dog', `d${i}.png`));
    copyFileSync(join(src, 'img0.png'), join(root, 'outdoor', 'o0.png'));
    symlinkSync(join(root, 'dog', 'd4.png'), join(root, 'outdoor', 'o4.png'));
    copyFileSync(join(src, 'img9.png'), join(root, 'outdoor', 'o9.png'));
    const scan = await scanDataset(root, { multiLabel: {} });
    const byRel = Object.fromEntries(scan.items.map((i) => [i.rel, names(scan, i)]));
    expect(byRel['cat/c0.png']).toEqual(['cat', 'outdoor']);
    expect(byRel['dog/d4.png']).toEqual(['dog', 'outdoor']);
    expect(byRel['outdoor/o9.png']).toEqual(['outdoor']);
    expect(byRel['cat/c1.png']).toEqual(['cat']);
    expect(scan.items).toHaveLength(9);
    expect(scan.conflicts).toEqual([]);
    expect(scan.skipped.map((s) => s.reason).sort()).toEqual(['identical to cat/c0.png, which takes its labels', 'the same file as dog/d4.png, which takes its labels']);
    await expect(scanDataset(root)).rejects.toThrow(/2 images are under two classes/);
  });

  it('the split keeps rare labels in validation and test where it can, and is the same for the same seed', async () => {
    // 200 images: 'common' on all, 'rare' on 10, 'scarce' on 3.
    const items: ImageItem[] = Array.from({ length: 200 }, (_, i) => ({ path: `/d/${i}.png`, rel: `${i}.png`, label: 0, format: 'png' as const, labels: [0, ...(i % 20 === 0 ? [1] : []), ...(i < 3 ? [2] : [])] }));
    const map = assignSplits(items, { val: 0.15, test: 0.15, seed: 5 });
    expect(assignSplits(items, { val: 0.15, test: 0.15, seed: 5 })).toEqual(map);
    const count = (label: number, split: string) => items.filter((i) => i.labels!.includes(label) && map[i.rel] === split).length;
    expect(count(1, 'val')).toBeGreaterThanOrEqual(1);
    expect(count(1, 'test')).toBeGreaterThanOrEqual(1);
    expect(count(1, 'train')).toBeGreaterThanOrEqual(6);
    // 3 images: one for training first, then validation; test cannot have one.
    expect(count(2, 'train')).toBeGreaterThanOrEqual(1);
    expect(count(2, 'val') + count(2, 'test')).toBeGreaterThanOrEqual(1);
    const sizes = ['train', 'val', 'test'].map((s) => Object.values(map).filter((v) => v === s).length);
    expect(sizes[1]).toBeGreaterThanOrEqual(28);
    expect(sizes[1]).toBeLessThanOrEqual(32);
    expect(sizes[2]).toBeGreaterThanOrEqual(28);
    expect(sizes[2]).toBeLessThanOrEqual(32);
    // A per-set stratification would put each of the 3 'scarce' images (distinct sets) in train.
    const dataset = await openDataset(data, { val: 0.2, test: 0.2, seed: 1, size: 32, labels: { file: join(data, 'labels.csv') }, multiLabel: {} });
    for (const split of ['val', 'test'] as const) expect(new Set(dataset.splits[split].flatMap((i) => i.labels!)).size, split).toBe(4);
  });
});

describe('a run with several labels per image', () => {
  let run: Awaited<ReturnType<typeof finetune>>;
  const store = tempDir();
  const options = { labels: join(data, 'labels.csv'), multiLabel: true, store, freeze: 'all' as const, epochs: 4, batchSize: 8, lr: 0.01, val: 0.25, test: 0.25, seed: 2 };

  beforeAll(async () => {
    run = await finetune(tf, info, finetuneOptions(data, tempDir(), { ...options, engine: 'onnx' }));
  }, 120_000);

  it('trains a sigmoid head with the same losses on ONNX Runtime and TensorFlow.js, and learns the colours', async () => {
    const onTfjs = await finetune(tf, info, finetuneOptions(data, tempDir(), { ...options, engine: 'tfjs' }));
    expect(run.phases[0]!.engine).toBe('onnx');
    expect(onTfjs.phases[0]!.engine).toBe('tfjs');
    run.history.forEach((h, i) => {
      expect(h.loss, `epoch ${h.epoch}`).toBeCloseTo(onTfjs.history[i]!.loss, 3);
      expect(h.val_loss!, `epoch ${h.epoch}`).toBeCloseTo(onTfjs.history[i]!.val_loss!, 3);
    });
    expect(run.history.at(-1)!.loss).toBeLessThan(run.history[0]!.loss);
    expect(run.metrics).toBeNull();
    expect(run.multiLabel!.count).toBe(16);
    expect(run.multiLabel!.mAP).toBeGreaterThan(0.9);
    expect(run.thresholds).toHaveLength(4);
    expect(run.calibration).toBeNull();
  }, 120_000);

  it('saves the thresholds with the model (config, tl.json, model.json, model.onnx) and reports metrics at them', () => {
    const config = JSON.parse(readFileSync(join(run.outDir, 'config.json'), 'utf8')) as { multiLabel: boolean };
    expect(config.multiLabel).toBe(true);
    const card = JSON.parse(readFileSync(join(run.outDir, 'model', 'tl.json'), 'utf8')) as { thresholds: number[]; output: string };
    expect(card.thresholds).toEqual(run.thresholds);
    expect(card.output).toMatch(/^sigmoid probabilities/);
    const tlEntry = (JSON.parse(readFileSync(join(run.outDir, 'model', 'model.json'), 'utf8')) as { userDefinedMetadata: { tl: { thresholds: number[] } } }).userDefinedMetadata.tl;
    expect(tlEntry.thresholds).toEqual(run.thresholds);
    const proto = onnx.ModelProto.decode(readFileSync(join(run.outDir, 'model.onnx')));
    const props = Object.fromEntries((proto.metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(JSON.parse(props['tl.thresholds']!)).toEqual(run.thresholds);
    const report = JSON.parse(readFileSync(join(run.outDir, 'report.json'), 'utf8')) as { multiLabel: { mAP: number }; metrics: null };
    expect(report.metrics).toBeNull();
    expect(report.multiLabel.mAP).toBe(run.multiLabel!.mAP);
    expect(readFileSync(join(run.outDir, 'report.md'), 'utf8')).toContain('| label | threshold | precision | recall | F1 | AP | support |');
    expect(readFileSync(join(run.outDir, 'report.html'), 'utf8')).toContain('id="chart-f1-per-label"');
  });

  it('tl eval gives the run\'s test metrics; tl predict gives the labels at or above their thresholds, from the run and its model.onnx', async () => {
    const evaluated = await runTl(['eval', '--model', run.outDir, '--json'], { TL_HOME: store });
    expect(evaluated.exitCode, evaluated.stderr).toBe(0);
    const e = JSON.parse(evaluated.stdout) as { multiLabel: { mAP: number; micro: { f1: number }; subsetAccuracy: number }; count: number };
    expect(e.count).toBe(16);
    expect(e.multiLabel.mAP).toBeCloseTo(run.multiLabel!.mAP!, 5);
    expect(e.multiLabel.micro.f1).toBeCloseTo(run.multiLabel!.micro.f1, 5);
    const split = JSON.parse(readFileSync(join(run.outDir, 'split.json'), 'utf8')) as { files: Record<string, string> };
    const tests = Object.entries(split.files).filter(([, s]) => s === 'test').map(([rel]) => join(data, rel));
    for (const model of [run.outDir, join(run.outDir, 'model.onnx')]) {
      const r = await runTl(['predict', '-m', model, ...tests, '--top', '4', '--json'], { TL_HOME: store });
      expect(r.exitCode, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { thresholds: number[]; classes: string[]; predictions: { path: string; top: { class: string; probability: number }[]; labels: { class: string }[] }[] };
      expect(out.thresholds).toEqual(run.thresholds);
      const probs = new Float32Array(tests.length * 4);
      const truth = new Float32Array(tests.length * 4);
      out.predictions.forEach((p, i) => {
        const wanted = p.top.filter((t) => t.probability >= out.thresholds[out.classes.indexOf(t.class)]!).map((t) => t.class);
        expect(p.labels.map((l) => l.class)).toEqual(wanted);
        for (const t of p.top) probs[i * 4 + out.classes.indexOf(t.class)] = t.probability;
        const rel = p.path.slice(data.length + 1);
        for (const name of sets[Number(/img(\d+)/.exec(rel)![1])]!) truth[i * 4 + out.classes.indexOf(name)] = 1;
      });
      // The predictions, scored at the thresholds, are the run's test metrics.
      expect(computeMultiLabelMetrics(probs, truth, out.classes, out.thresholds).micro.f1).toBeCloseTo(run.multiLabel!.micro.f1, 4);
    }
  }, 120_000);

  it('tl serve answers the labels at or above their thresholds, as tl predict does', async () => {
    const image = join(data, 'images', 'img5.png');
    const predicted = JSON.parse((await runTl(['predict', '-m', run.outDir, image, '--engine', 'onnx', '--json'], { TL_HOME: store })).stdout) as { predictions: { labels: { class: string; probability: number }[] }[] };
    const s = await startServer({ model: run.outDir, host: '127.0.0.1', port: 0, maxBatch: 4, maxWaitMs: 1, maxBodyBytes: 1 << 20, top: 4, threads: 1 });
    try {
      const answer = (await (await fetch(`${s.url}/predict`, { method: 'POST', body: readFileSync(image), headers: { 'content-type': 'image/png' } })).json()) as { labels: { class: string; probability: number; threshold: number }[] };
      expect(answer.labels.length).toBeGreaterThan(0);
      expect(answer.labels.map((l) => l.class)).toEqual(predicted.predictions[0]!.labels.map((l) => l.class));
      answer.labels.forEach((l, i) => {
        expect(l.probability).toBeCloseTo(predicted.predictions[0]!.labels[i]!.probability, 4);
        expect(l.probability).toBeGreaterThanOrEqual(l.threshold);
      });
    } finally {
      await s.close();
    }
  });

  it('commands that read one label per image refuse --multi-label, and exports that show one label refuse the run', async () => {
    for (const args of [['rank', data], ['curve', data], ['data', data, '--suspects']]) {
      const r = await runTl([...args, '--labels', join(data, 'labels.csv'), '--multi-label'], { TL_HOME: store });
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('reads one label per image; --multi-label is for tl finetune');
    }
    const demo = await runTl(['export', run.outDir, '--out', join(tempDir(), 'web'), '--format', 'tfjs', '--demo'], { TL_HOME: store });
    expect(demo.exitCode).toBe(2);
    expect(demo.stderr).toContain('--demo takes a classifier with one label per image');
    expect(existsSync(join(run.outDir, 'model.onnx'))).toBe(true);
    const summary = await runTl(['data', data, '--labels', join(data, 'labels.csv'), '--multi-label', '--json']);
    const s = JSON.parse(summary.stdout) as { multiLabel: boolean; classes: { name: string; total: number }[]; totals: { all: number } };
    expect(s.multiLabel).toBe(true);
    expect(s.totals.all).toBe(64);
    const auto = await runTl(['finetune', data, '--labels', join(data, 'labels.csv'), '--multi-label', '--freeze', 'auto', '--out', join(tempDir(), 'run')], { TL_HOME: store });
    expect(auto.exitCode).toBe(2);
    expect(auto.stderr).toContain('--freeze auto scores the backbone with one label per image');
    expect(s.classes.map((c) => c.total)).toEqual(['blue', 'green', 'red', 'yellow'].map((name) => sets.filter((set) => set.includes(name)).length));
  }, 60_000);
});
