// `tl curve DATA`: how test accuracy grows with the number of labelled images. The dataset is split once (test and
// validation fixed); fine-tunes then train on nested subsets of the training split (5, 10, 20, 50 images per class,
// then all), each a run of `tl finetune` with the same options reading the subset from a labels file, pretrained
// and (with `scratch`) from random weights with nothing frozen. A power law err(n) = a n^-b + c fitted to each arm
// gives the start, the slope and the asymptote (1 - c) of transfer, and what doubling the labels is expected to give.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendInfo, Tf } from '../backend/index.js';
import { scanDataset } from '../data/index.js';
import { assignSplits } from '../data/split.js';
import { UsageError } from '../errors.js';
import { renderSvg } from '../report/charts.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { prng } from '../util/random.js';
import { withoutNotices } from '../util/notice.js';
import type { FinetuneOptions, FinetuneResult } from './types.js';
import { resolveOptions } from './types.js';

export type CurveSize = number | 'all';

/** `--sizes`: a comma-separated list of images per class and `all`, e.g. "5,10,20,50,all". */
export function parseCurveSizes(text: string): CurveSize[] {
  const sizes = text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (s === 'all' ? 'all' : Number(s)));
  if (sizes.length < 1 || sizes.some((s) => s !== 'all' && !(Number.isInteger(s) && s >= 1))) throw new UsageError(`--sizes ${text}: expected whole numbers of images per class from 1, and 'all', separated by commas.`);
  return sizes;
}
export type CurveArm = 'pretrained' | 'scratch';

export interface CurvePoint {
  arm: CurveArm;
  /** The size asked for. */
  size: CurveSize;
  /** Training images per class, on average (a class with fewer gives all it has). */
  perClass: number;
  images: number;
  testAccuracy: number;
  seconds: number;
}

/** err(n) = a n^-b + c, n in training images per class. */
export interface PowerLaw {
  a: number;
  b: number;
  c: number;
}

export interface ArmSummary {
  arm: CurveArm;
  fit: PowerLaw | null;
  /** Test accuracy at the fewest images. */
  start: number;
  /** The fitted accuracy as images per class grow without bound: 1 - c. */
  asymptote: number | null;
  /** Expected gain in test accuracy from doubling the largest training set. */
  doubling: number | null;
}

export interface CurveResult {
  data: string;
  model: string;
  classes: string[];
  testImages: number;
  valImages: number;
  points: CurvePoint[];
  arms: ArmSummary[];
  files: string[];
}

export interface CurveOptions {
  sizes: CurveSize[];
  scratch: boolean;
  onRun?: (arm: CurveArm, size: CurveSize, index: number, total: number) => void;
}

/** Quotes a CSV field. */
const csvField = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/**
 * The power law through `points` (x: images per class, y: error rate) by least squares in log-log space for each
 * asymptote c on a grid below the smallest error; null with fewer than 3 points.
 */
export function fitPowerLaw(points: { x: number; y: number }[]): PowerLaw | null {
  if (points.length < 3) return null;
  const minErr = Math.min(...points.map((p) => p.y));
  let best: (PowerLaw & { sse: number }) | null = null;
  for (let k = 0; k < 200; k++) {
    const c = (minErr * k) / 200;
    const xs = points.map((p) => Math.log(p.x));
    const ys = points.map((p) => Math.log(p.y - c));
    const mx = xs.reduce((s, v) => s + v, 0) / xs.length;
    const my = ys.reduce((s, v) => s + v, 0) / ys.length;
    const sxx = xs.reduce((s, v) => s + (v - mx) ** 2, 0);
    if (sxx === 0) return null;
    const slope = xs.reduce((s, v, i) => s + (v - mx) * (ys[i]! - my), 0) / sxx;
    const b = -slope;
    if (!(b > 0)) continue;
    const a = Math.exp(my - slope * mx);
    const sse = points.reduce((s, p) => s + (a * p.x ** -b + c - p.y) ** 2, 0);
    if (!best || sse < best.sse) best = { a, b, c, sse };
  }
  return best ? { a: best.a, b: best.b, c: best.c } : null;
}

export const powerLawAccuracy = (f: PowerLaw, n: number) => 1 - (f.a * n ** -f.b + f.c);

/** Fine-tunes at each size (and from scratch with `curve.scratch`) and writes curve.json, curve.md and curve.svg into options.out. */
export async function learningCurve(tf: Tf, backend: BackendInfo, options: FinetuneOptions, curve: CurveOptions, finetune: (o: FinetuneOptions) => Promise<FinetuneResult>): Promise<CurveResult> {
  const run = resolveOptions(options, backend);
  const labelsSpec = run.labels ? { file: run.labels, ...(run.pathColumn ? { pathColumn: run.pathColumn } : {}), ...(run.labelColumn ? { labelColumn: run.labelColumn } : {}) } : undefined;
  const scan = await scanDataset(run.data, labelsSpec ? { labels: labelsSpec } : {});
  const splits = assignSplits(scan.items, { val: run.val, test: run.test, seed: run.seed });
  const bySplit = (s: string) => scan.items.filter((i) => splits[i.rel] === s);
  const [train, val, test] = [bySplit('train'), bySplit('val'), bySplit('test')];
  if (test.length === 0) throw new UsageError('tl curve measures test accuracy: --test must hold some images out.');
  // Each class's training images in a seeded order; a subset of n is the first n of each, so sets are nested.
  const random = prng(run.seed);
  const pools = scan.classes.map((_, label) => train.filter((i) => i.label === label).map((i) => [random(), i] as const).sort((x, y) => x[0] - y[0]).map(([, i]) => i));
  const largest = Math.max(...pools.map((p) => p.length));
  const sizes = [...new Set(curve.sizes.map((s) => (s === 'all' || s >= largest ? 'all' : s)))].sort((x, y) => (x === 'all' ? 1 : y === 'all' ? -1 : x - y));
  const arms: CurveArm[] = curve.scratch ? ['pretrained', 'scratch'] : ['pretrained'];
  await mkdir(run.out, { recursive: true });
  const points: CurvePoint[] = [];
  let index = 0;
  for (const size of sizes) {
    const chosen = pools.flatMap((p) => (size === 'all' ? p : p.slice(0, size)));
    const csv = join(run.out, `labels-${size}.csv`);
    const rows = [...chosen.map((i) => [i, 'train'] as const), ...val.map((i) => [i, 'val'] as const), ...test.map((i) => [i, 'test'] as const)];
    await writeFileAtomic(csv, `path,label,split\n${rows.map(([i, s]) => `${csvField(i.rel)},${csvField(scan.classes[i.label]!)},${s}`).join('\n')}\n`);
    for (const arm of arms) {
      curve.onRun?.(arm, size, index++, sizes.length * arms.length);
      const out = join(run.out, 'runs', `${arm}-${size}`);
      const started = performance.now();
      const { onProgress: _p, resume: _r, uniqueOut: _u, ...rest } = options;
      // The first run says what every run would (the labels file read, the freeze point, skipped files); the rest are quiet.
      const one = () => finetune({ ...rest, data: run.data, labels: csv, pathColumn: 'path', labelColumn: 'label', out, uniqueOut: false, trial: true, calibrate: 'none', ...(arm === 'scratch' ? { weights: 'random', freeze: 0 } : {}) });
      const result = index === 1 ? await one() : await withoutNotices(one);
      await rm(out, { recursive: true, force: true });
      if (!result.test || result.test.count !== test.length) throw new Error(`the ${arm} run at ${size} images per class tested on ${result.test?.count ?? 0} images, not the curve's ${test.length}`);
      points.push({ arm, size, perClass: chosen.length / scan.classes.length, images: chosen.length, testAccuracy: result.test.accuracy, seconds: (performance.now() - started) / 1000 });
    }
    await rm(csv, { force: true });
  }
  await rm(join(run.out, 'runs'), { recursive: true, force: true });
  const summaries = arms.map((arm): ArmSummary => {
    const mine = points.filter((p) => p.arm === arm);
    const fit = fitPowerLaw(mine.map((p) => ({ x: p.perClass, y: Math.max(1 - p.testAccuracy, 1e-4) })));
    const top = Math.max(...mine.map((p) => p.perClass));
    return { arm, fit, start: mine[0]!.testAccuracy, asymptote: fit ? 1 - fit.c : null, doubling: fit ? powerLawAccuracy(fit, 2 * top) - powerLawAccuracy(fit, top) : null };
  });
  const result: CurveResult = { data: run.data, model: run.model, classes: scan.classes, testImages: test.length, valImages: val.length, points, arms: summaries, files: [] };
  const files = [join(run.out, 'curve.json'), join(run.out, 'curve.md'), join(run.out, 'curve.svg')];
  result.files = files;
  await writeJsonAtomic(files[0]!, result);
  await writeFileAtomic(files[1]!, curveMarkdown(result));
  await writeFileAtomic(files[2]!, await renderSvg(curveSpec(result)));
  return result;
}

/** What the curve says, in sentences. */
export function curveSentences(r: CurveResult): string[] {
  return r.arms.map((s) => {
    const pts = r.points.filter((p) => p.arm === s.arm);
    const top = pts.at(-1)!;
    const head = `${s.arm}: ${(s.start * 100).toFixed(1)}% at ${pts[0]!.perClass.toFixed(0)} images per class, ${(top.testAccuracy * 100).toFixed(1)}% at ${top.perClass.toFixed(0)}`;
    if (!s.fit) return `${head} (too few sizes to fit a power law)`;
    return `${head}; fitted error ${s.fit.a.toFixed(2)} n^-${s.fit.b.toFixed(2)} + ${s.fit.c.toFixed(3)}: asymptote ${(s.asymptote! * 100).toFixed(1)}%; doubling the training set (to ${(2 * top.perClass).toFixed(0)} per class) is expected to give ${s.doubling! >= 0 ? '+' : ''}${(s.doubling! * 100).toFixed(1)} points`;
  });
}

function curveMarkdown(r: CurveResult): string {
  const sizes = [...new Set(r.points.map((p) => p.size))];
  const arms = r.arms.map((a) => a.arm);
  const cell = (arm: CurveArm, size: CurveSize) => r.points.find((p) => p.arm === arm && p.size === size);
  return [
    `# Learning curve: ${r.model} on ${r.data}`,
    '',
    `Test accuracy on the same ${r.testImages} test images (validation: ${r.valImages}) as the training set grows.`,
    '',
    `| images per class | ${arms.join(' | ')} |`,
    `| --- | ${arms.map(() => '---').join(' | ')} |`,
    ...sizes.map((size) => `| ${cell(arms[0]!, size)!.perClass.toFixed(size === 'all' ? 1 : 0)}${size === 'all' ? ' (all)' : ''} | ${arms.map((a) => (cell(a, size)!.testAccuracy * 100).toFixed(1) + '%').join(' | ')} |`),
    '',
    ...curveSentences(r).map((s) => `- ${s}`),
    '',
  ].join('\n');
}

/** The points and each arm's fitted power law (dashed beyond the largest set, to twice it), on a log scale. */
export function curveSpec(r: CurveResult): Record<string, unknown> {
  const top = Math.max(...r.points.map((p) => p.perClass));
  const lo = Math.min(...r.points.map((p) => p.perClass));
  const grid = [...Array.from({ length: 41 }, (_, i) => lo * ((2 * top) / lo) ** (i / 40)), top].sort((a, b) => a - b);
  const fitted = r.arms.flatMap((s) => (s.fit ? grid.map((n) => ({ arm: s.arm, perClass: n, accuracy: powerLawAccuracy(s.fit!, n) })) : []));
  const x = { field: 'perClass', type: 'quantitative', title: 'training images per class', scale: { type: 'log' } };
  const color = { field: 'arm', type: 'nominal', title: null };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    width: 480, height: 280, background: 'white',
    title: `Test accuracy against labelled images (${r.model})`,
    layer: [
      { data: { values: fitted.filter((f) => f.perClass <= top) }, mark: { type: 'line' }, encoding: { x, y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy', scale: { domain: [0, 1] } }, color } },
      { data: { values: fitted.filter((f) => f.perClass >= top) }, mark: { type: 'line', strokeDash: [4, 4] }, encoding: { x, y: { field: 'accuracy', type: 'quantitative' }, color } },
      { data: { values: r.points.map((p) => ({ ...p, size: String(p.size) })) }, mark: { type: 'point', filled: true, size: 60 }, encoding: { x, y: { field: 'testAccuracy', type: 'quantitative' }, color, tooltip: [{ field: 'size' }, { field: 'testAccuracy', format: '.3f' }] } },
    ],
  };
}
