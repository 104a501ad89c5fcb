// The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017; fastai's
// lr_find): train for a few dozen steps with a rate growing exponentially from tiny to huge, record the smoothed loss,
// and suggest the rate where it falls fastest, before it diverges. It runs on the training engine of the first phase
// (the same trainer, frozen-part cache and batches as the run itself); the weights are restored afterwards.
import { join } from 'node:path';
import type { Batch } from '../data/index.js';
import type { FrozenPart } from '../frozen/part.js';
import { renderSvg } from '../report/charts.js';
import type { Trainer } from '../step/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { notice } from '../util/notice.js';
import { mixSeed } from '../util/random.js';
import { writeRunRecords } from './run-output.js';
import type { Run } from './types.js';
import { epochItems } from './views.js';

export interface LrFindSpec {
  minLr: number;
  maxLr: number;
  steps: number;
}


export interface LrFindResult {
  /** One point per step taken: the rate, the batch's loss and the smoothed loss. */
  lrs: number[];
  losses: number[];
  /** The loss averaged over a centred window (a twentieth of the points each side): no lag, unlike a moving average. */
  smoothed: number[];
  /** The rate at the steepest descent of the smoothed loss before its minimum. */
  suggestion: number;
  /** Why the test ended before its last step (the loss diverged), or null. */
  stoppedEarly: string | null;
  spec: LrFindSpec;
}

/**
 * While the test runs, divergence is judged on an exponential moving average of the loss (bias-corrected) whose
 * window is a tenth of the test (beta 0.9 over 100 steps; fastai's fixed 0.98 averages over 50 steps).
 */
export function smoothingBeta(steps: number): number {
  return 1 - 1 / Math.max(2, steps / 10);
}

/** The mean of each point's centred window of +-w points (shorter at the ends). */
export function centred(values: number[], w: number): number[] {
  return values.map((_, i) => {
    const from = Math.max(0, i - w);
    const to = Math.min(values.length - 1, i + w);
    let sum = 0;
    for (let j = from; j <= to; j++) sum += values[j]!;
    return sum / (to - from + 1);
  });
}
/** The test stops once the smoothed loss exceeds this multiple of its minimum. */
const DIVERGED = 4;

/** The rate of step `i` of `steps`: exponential from minLr to maxLr. */
export function rangeRate(spec: LrFindSpec, i: number): number {
  return spec.minLr * (spec.maxLr / spec.minLr) ** (i / Math.max(1, spec.steps - 1));
}

/**
 * Runs the test: `step(lr)` takes one optimizer step on the next training batch at `lr` and returns its loss.
 * Stops early when the smoothed loss diverges (or the loss is not finite).
 */
export async function rangeTest(spec: LrFindSpec, step: (lr: number, index: number) => Promise<number>): Promise<LrFindResult> {
  const lrs: number[] = [];
  const losses: number[] = [];
  let average = 0;
  let best = Infinity;
  let stoppedEarly: string | null = null;
  const BETA = smoothingBeta(spec.steps);
  for (let i = 0; i < spec.steps; i++) {
    const lr = rangeRate(spec, i);
    const loss = await step(lr, i);
    if (!Number.isFinite(loss)) {
      stoppedEarly = `the loss became ${loss} at rate ${lr.toExponential(2)}`;
      break;
    }
    average = BETA * average + (1 - BETA) * loss;
    const value = average / (1 - BETA ** (i + 1));
    lrs.push(lr);
    losses.push(loss);
    best = Math.min(best, value);
    if (i > 0 && value > DIVERGED * best) {
      stoppedEarly = `the smoothed loss passed ${DIVERGED}x its minimum at rate ${lr.toExponential(2)}`;
      break;
    }
  }
  const smoothed = centred(losses, Math.max(1, Math.round(losses.length / 20)));
  return { lrs, losses, smoothed, suggestion: suggestLr(lrs, smoothed), stoppedEarly, spec };
}

/**
 * The rate where the smoothed loss falls fastest per decade of rate, among the points before its minimum (the
 * descent before divergence). Needs a few points of descent; otherwise says the range starts too high.
 */
export function suggestLr(lrs: number[], smoothed: number[]): number {
  const lowest = smoothed.indexOf(Math.min(...smoothed));
  if (lowest < 3) throw new Error(`the loss did not fall over the range test (lowest at step ${lowest + 1} of ${smoothed.length}): start it lower (--min-lr)`);
  // Slopes over a few points each side, so that one noisy batch does not decide.
  const w = Math.max(1, Math.round(smoothed.length / 40));
  let steepest = 1;
  let slope = Infinity;
  for (let i = 1; i < lowest; i++) {
    const a = Math.max(0, i - w);
    const b = Math.min(lowest, i + w);
    const s = (smoothed[b]! - smoothed[a]!) / (Math.log10(lrs[b]!) - Math.log10(lrs[a]!));
    if (s < slope) {
      slope = s;
      steepest = i;
    }
  }
  return lrs[steepest]!;
}

/** A small text plot of the smoothed loss against log10(rate), the suggestion marked with |. */
export function textPlot(result: LrFindResult, width = 60, height = 12): string {
  const { lrs, smoothed, suggestion } = result;
  const x = lrs.map((l) => Math.log10(l));
  const [x0, x1] = [Math.min(...x), Math.max(...x)];
  const top = Math.min(Math.max(...smoothed), 2 * smoothed[0]!);
  const bottom = Math.min(...smoothed);
  const grid = Array.from({ length: height }, () => Array.from({ length: width }, () => ' '));
  const col = (v: number) => Math.round(((v - x0) / Math.max(1e-12, x1 - x0)) * (width - 1));
  const mark = col(Math.log10(suggestion));
  for (let r = 0; r < height; r++) grid[r]![mark] = '|';
  x.forEach((v, i) => {
    const y = Math.min(top, smoothed[i]!);
    const row = height - 1 - Math.round(((y - bottom) / Math.max(1e-12, top - bottom)) * (height - 1));
    grid[row]![col(v)] = '*';
  });
  const label = (v: number) => v.toFixed(3).padStart(7);
  const lines = grid.map((cells, r) => `${r === 0 ? label(top) : r === height - 1 ? label(bottom) : ' '.repeat(7)} ${cells.join('')}`);
  const axis = `${' '.repeat(8)}${lrs[0]!.toExponential(0)}${' '.repeat(Math.max(1, width - 12))}${lrs.at(-1)!.toExponential(0)}`;
  return `${lines.join('\n')}\n${axis}\n${' '.repeat(8)}smoothed loss vs learning rate (log scale); | marks the suggestion ${suggestion.toExponential(2)}`;
}

/** The curve as a Vega-Lite chart: smoothed and raw loss against the rate (log scale), the suggestion as a rule. */
export function lrFindSpec(result: LrFindResult): Record<string, unknown> {
  const values = result.lrs.flatMap((lr, i) => [
    { lr, loss: result.losses[i], series: 'loss' },
    { lr, loss: result.smoothed[i], series: 'smoothed' },
  ]);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    config: { font: 'sans-serif', view: { stroke: null } },
    title: `Learning-rate range test (suggestion ${result.suggestion.toExponential(2)})`,
    width: 420,
    height: 240,
    layer: [
      {
        data: { values },
        mark: { type: 'line', clip: true },
        encoding: {
          x: { field: 'lr', type: 'quantitative', scale: { type: 'log' }, title: 'learning rate', axis: { format: '.0e', grid: false } },
          y: { field: 'loss', type: 'quantitative', title: 'training loss', scale: { zero: false, domain: [Math.min(...result.smoothed), Math.min(Math.max(...result.smoothed), 2 * result.smoothed[0]!)] } },
          color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['loss', 'smoothed'], range: ['#bbbbbb', '#4c78a8'] } },
        },
      },
      { data: { values: [{ lr: result.suggestion }] }, mark: { type: 'rule', color: '#e45756', strokeDash: [4, 4] }, encoding: { x: { field: 'lr', type: 'quantitative' } } },
    ],
  };
}

/** lr-find.json and lr-find.svg in a run folder (written atomically). */
export async function writeLrFind(out: string, result: LrFindResult): Promise<{ json: string; svg: string }> {
  const json = join(out, 'lr-find.json');
  const svg = join(out, 'lr-find.svg');
  await writeJsonAtomic(json, result);
  await writeFileAtomic(svg, await renderSvg(lrFindSpec(result)));
  return { json, svg };
}

/**
 * `--lr find`: the range test to run on the first phase, and what its result sets. The suggestion becomes the first
 * phase's rate (a later phase's is a tenth of it, as with --lr) and goes into config.json with the test's record.
 */
export function lrFindStep(run: Run, config: Record<string, unknown>, splitRecord: unknown, mode: 'train' | 'lr-find'): NonNullable<Run['lrFind']> {
  const { options, phases } = run;
  return {
    spec: { minLr: options.minLr, maxLr: options.maxLr, steps: options.lrFindSteps },
    found: async (result) => {
      phases[0]!.lr = result.suggestion;
      if (phases[1]) phases[1].lr = options.finetuneLr ?? result.suggestion / 10;
      config.lr = result.suggestion;
      config.lrFind = { suggestion: result.suggestion, minLr: result.spec.minLr, maxLr: result.spec.maxLr, steps: result.lrs.length, stoppedEarly: result.stoppedEarly };
      const files = await writeLrFind(options.out, result);
      run.lrFindResult = { ...result, files };
      if (mode === 'train') await writeRunRecords(options.out, config, splitRecord);
      notice(`--lr find: ${result.suggestion.toExponential(2)} (steepest descent of the loss over a range test of ${result.lrs.length} steps${result.stoppedEarly ? `, ended when ${result.stoppedEarly}` : ''}; curve in ${files.svg})`);
    },
  };
}

/** The range test on the first phase's trainer and batches (shuffled anew each pass); the weights are restored. */
export async function findLearningRate(run: Run, spec: LrFindSpec, trainer: Trainer, frozen: FrozenPart): Promise<LrFindResult> {
  const { tf, options, dataset } = run;
  const snapshot = run.weights.snapshot();
  let pass = 0;
  const open = () => {
    const shown = epochItems(options, dataset.splits.train, 9_000 + pass);
    return dataset.source.batches(shown.items, { batchSize: options.batchSize, shuffleSeed: mixSeed(options.seed, 9_000 + pass), augment: shown.augment, augmentSeed: mixSeed(options.seed, 9_000 + pass, 7), needPixels: frozen.needsPixels })[Symbol.asyncIterator]();
  };
  let batches = open();
  try {
    return await rangeTest(spec, async (lr, index) => {
      let next = await batches.next();
      if (next.done) {
        pass++;
        batches = open();
        next = await batches.next();
      }
      const batch = next.value as Batch;
      const step = await trainer.step({ boundary: await frozen.boundary(batch), labels: batch.labels, lr, dropoutSeed: mixSeed(options.seed, 9_000, index, 3) });
      options.onProgress?.({ phase: 'lr-find', epoch: 0, epochs: 0, done: index + 1, total: spec.steps, loss: step.loss });
      return step.loss;
    });
  } finally {
    await batches.return?.(undefined);
    run.weights.restore(snapshot);
    tf.dispose(snapshot);
  }
}
