// `--freeze auto`: pick the freeze depth from the data. One pass over the training images records the pooled
// activations at every block boundary in the upper 70% of the backbone; each depth is scored by LogME (and TransRate)
// (how well the features a cut there hands to the trained part suit the labels). LogME alone does not pick the depth
// to fine-tune from: it peaks where the pretrained features transfer best, while fine-tuning usually gains most from
// training some blocks below that peak too (on the bundled sample, LogME peaks at block 15 while the best depths of a
// full sweep are blocks 6 to 10). So the depths are then tried with short fine-tunes, coarse to fine: the LogME peak and two depths that
// split the boundaries below it into thirds, then the neighbours of the best of those; the depth whose short run
// validates best is chosen. The curve (depth -> scores, probe results) goes into the run's record and report.
import type { EngineName } from '../engine/names.js';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendInfo, LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { blockBoundaries, type Depth } from '../model/depths.js';
import type { Dataset } from '../data/index.js';
import { runBatches, type InferenceModel } from '../inference/index.js';
import { logme, transrate } from '../metrics/transferability.js';
import type { PreprocessMode } from '../registry/index.js';
import { notice } from '../util/notice.js';
import type { Backbone } from '../weights/backbone.js';
import type { FinetuneOptions, RunOptions } from './types.js';

export interface DepthScore extends Depth {
  logme: number;
  transrate: number;
  /** The short fine-tune at this depth (the best few depths by LogME only): its best validation epoch. */
  probe: { valAccuracy: number; valLoss: number; seconds: number } | null;
}

export interface FreezeAutoResult {
  depths: DepthScore[];
  /** The chosen `--freeze` count. */
  chosen: number;
  /** Epochs of each short fine-tune. */
  probeEpochs: number;
  scoreSeconds: number;
  seconds: number;
}

/** Epochs of each short fine-tune. */
export const PROBE_EPOCHS = 2;
/** Depths that freeze less than this share of the backbone are not considered (they train most of the network). */
export const MIN_FROZEN_SHARE = 0.3;

/** A short fine-tune at `freeze` into `out`: its history (what `finetune` returns). */
export type ProbeRun = (freeze: number, out: string) => Promise<{ history: { val_loss: number | null; val_accuracy: number | null }[] }>;

export async function chooseFreezeDepth(
  tf: Tf,
  backend: BackendInfo,
  backbone: LayersModel,
  setting: { preprocess: PreprocessMode; inputSize: number; batchSize: number; workers: number; engine: EngineName; store?: string; out: string },
  dataset: Dataset,
  probe: ProbeRun,
): Promise<FreezeAutoResult> {
  const started = performance.now();
  const depths = blockBoundaries(backbone).filter((d) => d.freeze >= MIN_FROZEN_SHARE * backbone.layers.length);
  if (depths.length < 2) throw new Error(`${backbone.name} has no block boundary to choose among`);
  // One model with every boundary's pooled activations side by side.
  const pooled = depths.map((d, i) => tf.layers.globalAveragePooling2d({ name: `depth_pool_${i}` }).apply(backbone.getLayer(d.layer).output as SymbolicTensor) as SymbolicTensor);
  const widths = pooled.map((p) => p.shape[1] as number);
  const joined = tf.layers.concatenate({ axis: -1, name: 'depth_pools' }).apply(pooled) as SymbolicTensor;
  const model = tf.model({ inputs: backbone.inputs, outputs: joined, name: `${backbone.name}_depths` });
  const width = widths.reduce((a, b) => a + b, 0);
  // The wrapper shares the backbone's layers (the run's own): nothing is disposed here.
  const im: InferenceModel = { name: backbone.name, preprocess: setting.preprocess, inputSize: setting.inputSize, classes: null, model, outputLayer: 'depth_pools', outputShape: [width], dispose: () => {} };
  const train = dataset.splits.train;
  const features = new Float32Array(train.length * width);
  const row = new Map(train.map((item, i) => [item.path, i]));
  const seen = new Set<number>();
  for await (const batch of runBatches(tf, im, dataset.source, train, { batchSize: setting.batchSize, workers: setting.workers, backend: backend.name, engine: setting.engine, ...(setting.store ? { store: setting.store } : {}) })) {
    batch.items.forEach((item, b) => {
      const i = row.get(item.path)!;
      seen.add(i);
      features.set(batch.outputs.subarray(b * width, (b + 1) * width), i * width);
    });
  }
  const kept = [...seen].sort((a, b) => a - b);
  const labels = Int32Array.from(kept, (i) => train[i]!.label);
  let offset = 0;
  const scored: DepthScore[] = depths.map((depth, k) => {
    const w = widths[k]!;
    const data = new Float32Array(kept.length * w);
    kept.forEach((i, r) => data.set(features.subarray(i * width + offset, i * width + offset + w), r * w));
    offset += w;
    const f = { data, n: kept.length, d: w };
    return { ...depth, logme: logme(f, labels), transrate: transrate(f, labels), probe: null };
  });
  const scoreSeconds = (performance.now() - started) / 1000;
  // Coarse to fine: the LogME peak and the depths a third and two thirds of the way up to it; then the neighbours of
  // the best so far. The best validation accuracy wins (then the lower loss, then the deeper freeze, which trains less).
  const peak = scored.reduce((best, d, i) => (d.logme > scored[best]!.logme ? i : best), 0);
  const better = (a: DepthScore, b: DepthScore) => {
    const pa = a.probe!;
    const pb = b.probe!;
    if (pb.valAccuracy !== pa.valAccuracy) return pb.valAccuracy > pa.valAccuracy ? b : a;
    if (pb.valLoss !== pa.valLoss) return pb.valLoss < pa.valLoss ? b : a;
    return b.freeze > a.freeze ? b : a;
  };
  const folder = join(setting.out, 'freeze-auto');
  const tryDepth = async (i: number) => {
    const c = scored[i];
    if (!c || c.probe) return;
    const t0 = performance.now();
    const r = await probe(c.freeze, join(folder, `freeze-${c.freeze}`));
    const validated = r.history.filter((h) => h.val_accuracy !== null);
    if (validated.length === 0) throw new Error('--freeze auto needs validation images (--val above 0)');
    const best = validated.reduce((a, b) => (b.val_accuracy! > a.val_accuracy! || (b.val_accuracy === a.val_accuracy && b.val_loss! < a.val_loss!) ? b : a));
    c.probe = { valAccuracy: best.val_accuracy!, valLoss: best.val_loss!, seconds: (performance.now() - t0) / 1000 };
  };
  try {
    for (const i of new Set([peak, Math.round((2 * peak) / 3), Math.round(peak / 3)])) await tryDepth(i);
    const first = scored.filter((d) => d.probe).reduce(better);
    const at = scored.indexOf(first);
    await tryDepth(at - 1);
    await tryDepth(at + 1);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
  const winner = scored.filter((d) => d.probe).reduce(better);
  return { depths: scored, chosen: winner.freeze, probeEpochs: PROBE_EPOCHS, scoreSeconds, seconds: (performance.now() - started) / 1000 };
}

/**
 * `--freeze auto` for a run: the depth chosen with probes that are short fine-tunes of the run's own settings
 * (`finetune` runs each), said in a notice.
 */
export async function freezeAutoFor(tf: Tf, backend: BackendInfo, options: RunOptions, source: Backbone, dataset: Dataset, finetune: (options: FinetuneOptions) => Promise<{ history: { val_loss: number | null; val_accuracy: number | null }[] }>): Promise<FreezeAutoResult> {
  const setting = { preprocess: source.preprocess, inputSize: options.inputSize ?? source.inputSize, batchSize: options.batchSize, workers: options.workers, engine: options.engine, ...(options.store ? { store: options.store } : {}), out: options.out };
  const result = await chooseFreezeDepth(tf, backend, source.model, setting, dataset, async (freeze, out) => {
    const { onProgress: _p, patience: _pa, resume: _r, headEpochs: _h, ...rest } = options;
    return await finetune({ ...rest, freeze, epochs: PROBE_EPOCHS, lr: options.lr === 'find' ? 'auto' : options.lr, calibrate: 'none', out, uniqueOut: false, trial: true });
  });
  const chosen = result.depths.find((d) => d.freeze === result.chosen)!;
  notice(`--freeze auto: ${chosen.freeze} (after ${chosen.layer}; of ${result.depths.length} block boundaries scored by LogME in ${result.scoreSeconds.toFixed(1)} s, the best ${result.depths.filter((d) => d.probe).length} fine-tuned for ${result.probeEpochs} epochs each: validation accuracy ${chosen.probe!.valAccuracy.toFixed(3)}; ${result.seconds.toFixed(0)} s in all)`);
  return result;
}
