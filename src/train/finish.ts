// The end of a run: test metrics, the calibration's effect on them, advice, the trained model and the reports.
import { wasmHeapBytes } from '../backend/index.js';
import { temper } from '../metrics/calibration.js';
import { computeMetrics, nonFiniteRows } from '../metrics/classification.js';
import { computeMultiLabelMetrics } from '../metrics/multilabel.js';
import { confidentLearning } from '../metrics/confident-learning.js';
import { imageTargets, targetRows } from '../model/loss.js';
import { REPORT_SCHEMA_VERSION, writeReports } from '../report/index.js';
import type { HtmlExtras } from '../report/render.js';
import { augmentSheet } from '../data/augment.js';
import { SPLITS } from '../data/index.js';
import { nearDuplicates, WARN_SCORE } from '../data/near-duplicates.js';
import { join } from 'node:path';
import type { Calibration, CalibrationEffect } from '../report/schema.js';
import { concatFloat32 } from '../util/arrays.js';
import { notice } from '../util/notice.js';
import { TL_VERSION } from '../version.js';
import { countTrainable } from './head.js';
import type { RunPlan } from './plan.js';
import { writeTrainedModel } from './run-output.js';
import type { FinetuneResult, Run } from './types.js';

/** Test metrics (none when the kept weights give non-finite outputs) and what calibration changed on them. */
function testMetrics(run: Run, warnings: string[]): Pick<FinetuneResult, 'metrics' | 'calibration' | 'multiLabel'> {
  const { dataset } = run;
  const testProbs = concatFloat32(run.kept.probs);
  const broken = nonFiniteRows(testProbs, dataset.classes.length);
  if (broken > 0) {
    // The kept weights give NaN (weights that never fit, or a divergence before any good epoch): say so, no metrics.
    warnings.push(`the model's outputs are not finite for ${broken} of ${run.kept.labels.length} test images, so there are no test metrics`);
    notice(warnings.at(-1)!);
    run.test = null;
  }
  if (dataset.labelSets) {
    const k = dataset.classes.length;
    const thresholds = run.thresholds ?? new Array<number>(k).fill(0.5);
    const multiLabel = run.test ? computeMultiLabelMetrics(testProbs, imageTargets(targetRows(dataset.labelSets, k), run.kept.labels, k), dataset.classes, thresholds) : null;
    // The test loss and accuracy are the metrics' (binary cross-entropy; subset accuracy at the tuned thresholds).
    if (run.test && multiLabel) run.test = { loss: multiLabel.logLoss, accuracy: multiLabel.subsetAccuracy };
    return { metrics: null, calibration: null, multiLabel };
  }
  const metrics = run.test ? computeMetrics(testProbs, run.kept.labels, dataset.classes, { paths: run.kept.paths }) : null;
  // One test loss: the metrics' log-loss (the tail's own cross-entropy clips differently).
  if (run.test && metrics) run.test.loss = metrics.logLoss;
  if (!run.calibration) return { metrics, calibration: null, multiLabel: null };
  const { temperature } = run.calibration;
  let test: CalibrationEffect | null = null;
  if (metrics && run.calibration.applied) {
    const before = computeMetrics(temper(testProbs, dataset.classes.length, 1 / temperature), run.kept.labels, dataset.classes);
    test = { logLossBefore: before.logLoss, logLossAfter: metrics.logLoss, eceBefore: before.ece, eceAfter: metrics.ece };
  }
  const calibration: Calibration = { ...run.calibration, test };
  return { metrics, calibration, multiLabel: null };
}

/**
 * The test images whose given label is probably wrong: confident learning on the saved model's test probabilities
 * (out of sample: the model never trained on them), worst first (the lowest probability of the given label).
 * `tl data --suspects` audits every image, training ones included, with out-of-fold probes.
 */
function testSuspects(run: Run, metrics: FinetuneResult['metrics']): FinetuneResult['suspects'] {
  if (!metrics || run.dataset.labelSets) return null;
  const { classes } = run.dataset;
  const k = classes.length;
  const probs = concatFloat32(run.kept.probs);
  const labels = Int32Array.from(run.kept.labels);
  return confidentLearning(probs, labels, k)
    .issues.map(({ row, likely }) => ({ path: run.kept.paths[row]!, given: classes[labels[row]!]!, likely: classes[likely]!, givenProbability: probs[row * k + labels[row]!]!, likelyProbability: probs[row * k + likely]! }))
    .sort((a, b) => a.givenProbability - b.givenProbability);
}

/** The most images the fine-tune compares for near-duplicates (every pair: 2.5 s at 530 images on 2 cores, BENCHMARKS.md, so about four times that at 1,000). */
const NEAR_DUPLICATE_LIMIT = 1000;

/**
 * Possible near-duplicates across splits: a validation or test image that looks like a training image resized,
 * re-encoded or cropped makes the held-out metrics too good. Look-alikes can be listed too (src/data/near-duplicates.ts).
 */
async function heldOutNearDuplicates(run: Run, warnings: string[]): Promise<FinetuneResult['nearDuplicates']> {
  const { dataset } = run;
  const items = SPLITS.flatMap((s) => dataset.splits[s]);
  if (dataset.splits.val.length + dataset.splits.test.length === 0 || run.options.trial) return null;
  if (items.length > NEAR_DUPLICATE_LIMIT) {
    notice(`near-duplicates across splits not checked: ${items.length} images (the run compares up to ${NEAR_DUPLICATE_LIMIT}); tl data --duplicates compares them all`);
    return null;
  }
  const splitOf = new Map(SPLITS.flatMap((s) => dataset.splits[s].map((item) => [item.rel, s] as const)));
  const found = (await nearDuplicates(items, undefined, WARN_SCORE)).flatMap((p) => {
    const [sa, sb] = [splitOf.get(p.a)!, splitOf.get(p.b)!];
    if ((sa === 'train') === (sb === 'train')) return [];
    const [train, heldOut, split] = sa === 'train' ? [p.a, p.b, sb] : [p.b, p.a, sa];
    return [{ train: join(dataset.root, train), heldOut: join(dataset.root, heldOut), split: split as 'val' | 'test', score: p.score }];
  });
  if (found.length > 0) {
    warnings.push(`${found.length} validation or test image${found.length > 1 ? 's look' : ' looks'} like a training image resized, re-encoded or cropped (e.g. ${found[0]!.heldOut} and ${found[0]!.train}); if they are one picture, the held-out metrics include it. report.html shows the pairs; look-alike images can be listed too`);
    notice(warnings.at(-1)!);
  }
  return found;
}

/** Advice when the monitored value still improved at the last epoch. */
function moreEpochsHint(run: Run, epochs: number): string | null {
  const last = run.history.at(-1);
  if (run.options.trial || run.stopReason !== null || run.best === null || !last || run.best.epoch !== last.epoch || run.history.length <= 1) return null;
  // --epochs counts the last phase's epochs (a head phase comes on top): the hint trains about half as many again.
  const more = Math.max(1, Math.round(run.totalEpochs / 2));
  return `${run.best.monitor} was still improving at the last epoch (${last.epoch}): more epochs may help (\`tl finetune --resume ${run.options.out} --epochs ${epochs + more}\` trains ${more} more)`;
}

/** Writes the model and the reports, and returns the run's result. */
export async function finishRun(run: Run, plan: RunPlan, facts: { frozenCount: number; inputSize: number; warnings: string[]; resumedFrom: FinetuneResult['resumedFrom']; started: number }): Promise<FinetuneResult> {
  const { tf, options, source, dataset, full, backbone } = run;
  const { warnings } = facts;
  const { metrics, calibration, multiLabel } = testMetrics(run, warnings);
  const nearDuplicatePairs = await heldOutNearDuplicates(run, warnings);
  const hint = moreEpochsHint(run, plan.epochs);
  if (hint !== null) {
    warnings.push(hint);
    notice(hint);
  }
  const name = source.name.split(' ')[0]!;
  const onnx = await writeTrainedModel(tf, options.out, full, { name, classes: dataset.classes, preprocess: source.preprocess, inputSize: facts.inputSize, temperature: calibration?.applied ? calibration.temperature : null, resize: options.resize, ...(run.thresholds ? { thresholds: run.thresholds } : {}) });
  const { cacheStats } = run;
  const lookups = cacheStats.hits + cacheStats.misses;
  const result: FinetuneResult = {
    outDir: options.out,
    classes: dataset.classes,
    history: run.history,
    phases: run.phases,
    test: run.test ? { ...run.test, count: dataset.splits.test.length } : null,
    frozenLayers: facts.frozenCount,
    totalLayers: backbone.layers.length,
    trainableParams: countTrainable(full, backbone, facts.frozenCount, run.bn),
    boundaryLayers: run.boundaryLayers,
    cache: { enabled: cacheStats.enabled, hitRate: lookups === 0 ? 0 : cacheStats.hits / lookups, spilled: cacheStats.spilled },
    frozenPass: run.frozenPass,
    best: run.best,
    stopReason: run.stopReason,
    resumedFrom: facts.resumedFrom,
    calibration,
    onnx,
    metrics,
    multiLabel,
    thresholds: run.thresholds,
    suspects: testSuspects(run, metrics),
    nearDuplicates: nearDuplicatePairs,
    tensorsAfterEpoch: run.tensorsAfterEpoch,
    wasmHeapBytes: wasmHeapBytes(),
    skipped: dataset.skipped,
    warnings,
  };
  const { outDir: _outDir, ...rest } = result;
  await writeReports(options.out, { schemaVersion: REPORT_SCHEMA_VERSION, kind: 'finetune', tlVersion: TL_VERSION, createdAt: new Date().toISOString(), backend: run.backend.label, model: source.name, data: options.data, config: plan.config, seconds: (performance.now() - facts.started) / 1000, ...rest }, await sheetOf(run, facts.inputSize));
  return result;
}

/** With --augment: 16 training images as the augmentation draws them, for report.html. */
async function sheetOf(run: Run, size: number): Promise<HtmlExtras> {
  const level = run.options.augment;
  if (level === 'none') return {};
  const images: Uint8Array[] = [];
  for (const item of run.dataset.splits.train) {
    if (images.length === 16) break;
    const pixels = await run.dataset.source.load(item);
    if (pixels) images.push(pixels);
  }
  return images.length === 0 ? {} : { augmentSheet: { jpeg: await augmentSheet(images, size, level, run.options.seed), level, images: images.length } };
}
