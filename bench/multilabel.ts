// `npm run bench -- --multi-label`: several labels per image on real images. Two Fashion-MNIST items side by side
// make one image whose labels are both items' classes. A multi-label run (sigmoid head, thresholds tuned on
// validation) against a single-label run trained on the same images with the left item's class alone, both scored
// on the same test images as multi-label predictors (the single-label model's probabilities rank the labels; it
// predicts its top class), over seeds.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeMultiLabelMetrics } from '../src/metrics/multilabel.js';
import { debianFile } from '../scripts/debian.js';
import { FASHION_CLASSES, writeFashionPairs } from '../scripts/fashion-mnist.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const IMAGES = 1000;
const SEEDS = [1, 2];
const COMMON = ['--input-size', '96', '--resize', 'pad', '--epochs', '10'];

interface Scored {
  mAP: number;
  microF1: number;
  macroF1: number;
  subset: number;
  seconds: number;
}

export async function multiLabelBench(root: string, work: string): Promise<Section> {
  const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
  if (idx.path === null) throw new Error(`this check needs Fashion-MNIST: ${idx.reason}`);
  const data = join(work, 'pairs');
  await writeFashionPairs({ src: join(idx.path, '..'), out: data, images: IMAGES, classes: FASHION_CLASSES.map((_, i) => i), split: 'train', seed: 11 });
  const rows = readFileSync(join(data, 'labels.csv'), 'utf8').trim().split('\n').slice(1).map((line) => line.split(','));
  const truthOf = new Map(rows.map(([path, labels]) => [path!, labels!.split(';')]));
  const env = { ...process.env, TL_HOME: join(work, 'home') };
  const tl = (args: string[]) => execFileSync(process.execPath, [join(root, 'bin', 'tl.js'), ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
  const classes: string[] = [...FASHION_CLASSES].sort();
  /** A run's probabilities for `tests`, scored against both items' labels at `thresholds` (null: its top class alone). */
  const score = (run: string, tests: string[], thresholds: number[] | null, seconds: number): Scored => {
    const out = JSON.parse(tl(['predict', '-m', run, ...tests.map((t) => join(data, t)), '--top', '10', '--json'])) as { classes: string[]; predictions: { path: string; top: { class: string; probability: number }[] }[] };
    const k = classes.length;
    const probs = new Float32Array(tests.length * k);
    const truth = new Float32Array(tests.length * k);
    out.predictions.forEach((p, i) => {
      for (const t of p.top) probs[i * k + classes.indexOf(t.class)] = t.probability;
      for (const name of truthOf.get(p.path.slice(data.length + 1))!) truth[i * k + classes.indexOf(name)] = 1;
    });
    // A single-label model predicts its top class: a threshold just under each image's top probability does that.
    const rowsProbs = thresholds ? probs : probs.map((v, j) => (v >= Math.max(...probs.subarray(Math.floor(j / k) * k, Math.floor(j / k) * k + k)) ? 1 : 0));
    const m = computeMultiLabelMetrics(rowsProbs, truth, classes, thresholds ?? new Array<number>(k).fill(0.5));
    const ranked = computeMultiLabelMetrics(probs, truth, classes, new Array<number>(k).fill(0.5));
    return { mAP: ranked.mAP!, microF1: m.micro.f1, macroF1: m.macro.f1, subset: m.subsetAccuracy, seconds };
  };
  const results: { arm: string; seed: number; s: Scored }[] = [];
  const testCounts: number[] = [];
  for (const seed of SEEDS) {
    log(`multi-label run, seed ${seed}`);
    const multi = join(work, `multi-${seed}`);
    let t0 = performance.now();
    tl(['finetune', data, '--labels', join(data, 'labels.csv'), '--multi-label', ...COMMON, '--seed', String(seed), '--out', multi, '--json']);
    const multiSeconds = (performance.now() - t0) / 1000;
    const split = (JSON.parse(readFileSync(join(multi, 'split.json'), 'utf8')) as { files: Record<string, string> }).files;
    const tests = Object.entries(split).filter(([, s]) => s === 'test').map(([rel]) => rel).sort();
    testCounts.push(tests.length);
    const thresholds = (JSON.parse(readFileSync(join(multi, 'model', 'tl.json'), 'utf8')) as { thresholds: number[] }).thresholds;
    results.push({ arm: 'multi-label (--multi-label, both items\' classes)', seed, s: score(multi, tests, thresholds, multiSeconds) });
    // The same images and split, labelled with the left item's class alone.
    const single = join(work, `single-${seed}.csv`);
    writeFileSync(single, `path,label,split\n${rows.map(([path, , first]) => `${path},${first},${split[path!]}`).join('\n')}\n`);
    log(`single-label run, seed ${seed}`);
    const singleRun = join(work, `single-${seed}`);
    t0 = performance.now();
    tl(['finetune', data, '--labels', single, ...COMMON, '--seed', String(seed), '--calibrate', 'none', '--out', singleRun, '--json']);
    results.push({ arm: 'single-label (the left item\'s class)', seed, s: score(singleRun, tests, null, (performance.now() - t0) / 1000) });
    for (const dir of [multi, singleRun]) rmSync(dir, { recursive: true, force: true });
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const arms = [...new Set(results.map((r) => r.arm))];
  const head = ['model', 'mAP per seed', 'mean mAP', 'micro F1', 'macro F1', 'subset accuracy', 'seconds per run'];
  const table = arms.map((arm) => {
    const rs = results.filter((r) => r.arm === arm).map((r) => r.s);
    return [arm, rs.map((s) => s.mAP.toFixed(3)).join(', '), mean(rs.map((s) => s.mAP)).toFixed(3), mean(rs.map((s) => s.microF1)).toFixed(3), mean(rs.map((s) => s.macroF1)).toFixed(3), mean(rs.map((s) => s.subset)).toFixed(3), mean(rs.map((s) => s.seconds)).toFixed(0)];
  });
  return {
    title: 'Multi-label',
    lines: [
      `${IMAGES} images of two Fashion-MNIST items side by side (56x28; all 10 classes; an image of two items of one class has one label), labels listed in a CSV file. Both models: tl finetune's defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam at 1e-4) with ${COMMON.join(' ')}, seeds ${SEEDS.join(' and ')} (each seed draws the split; the single-label run keeps the multi-label run's split through a split column). The multi-label model predicts each label at its threshold tuned on validation; the single-label model, trained on the left item's class, predicts its top class. All metrics on the same test images (${testCounts.join(' and ')} for the two seeds) against both items' labels; mAP ranks labels by each model's probabilities.`,
      '',
      `| ${head.join(' | ')} |`,
      `| ${head.map(() => '---').join(' | ')} |`,
      ...table.map((r) => `| ${r.join(' | ')} |`),
    ],
  };
}
