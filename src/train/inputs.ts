// What a run reads before it plans: its checkpoint (when resuming), the backbone, the dataset (with its warnings),
// and a `--cache` cache checked against the run.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Tf } from '../backend/index.js';
import { datasetWarnings, openDataset, type Dataset } from '../data/index.js';
import { mixing } from '../data/mix.js';
import { InterruptedError, TlError, UsageError } from '../errors.js';
import { readCache, loadCacheArrays, type CacheRecord } from '../frozen/folder.js';
import { notice } from '../util/notice.js';
import { labelsOf, multiLabelOf } from '../options/shared.js';
import { loadBackbone, type Backbone } from '../weights/backbone.js';
import { readCheckpoint } from './checkpoint.js';
import { checkpointPaths, type Run, type RunOptions, type RunState } from './types.js';

export interface RunInputs {
  checkpoint: Run['checkpoint'];
  source: Backbone;
  dataset: Dataset;
  /** `--cache`: the cache's record, verified once; the images it holds outputs for are not decoded at all. */
  cacheRecord: CacheRecord | null;
  warnings: string[];
  /** split.json: which file went to which split. */
  splitRecord: unknown;
}

/** The checkpoint to resume from; a damaged one fails before any slow work. */
async function resumeCheckpoint(options: RunOptions): Promise<Run['checkpoint']> {
  const paths = checkpointPaths(options.out);
  // A run stopped before its first checkpoint (killed, or its disk full) has only its config: it starts over from it.
  const checkpoint = options.resume && existsSync(paths.last) ? await readCheckpoint<RunState>(paths.last) : null;
  if (options.resume && checkpoint === null) notice(`${options.out} has no checkpoint (the run stopped before its first epoch ended): starting it over from its config.json`);
  if (checkpoint && checkpoint.state.version !== 1) throw new TlError('E_CHECKPOINT', `${paths.last} has checkpoint version ${String(checkpoint.state.version)}; this tl reads version 1.`);
  return checkpoint;
}

export async function readRunInputs(tf: Tf, options: RunOptions): Promise<RunInputs> {
  const checkpoint = await resumeCheckpoint(options);
  const source = await loadBackbone(tf, options.model, { weights: options.weights, seed: options.seed, ...(options.inputSize ? { inputSize: options.inputSize } : {}), ...(options.preprocess ? { preprocess: options.preprocess } : {}), ...(options.store ? { store: options.store } : {}), ...(options.onDownload ? { onDownload: options.onDownload } : {}), ...(options.interrupt?.signal ? { signal: options.interrupt.signal } : {}), keepHead: !options.newHead, ...(options.arch ? { arch: options.arch } : {}) });
  try {
    const cacheRecord = options.cache ? await readCache(options.cache) : null;
    const labels = labelsOf(options);
    const multiLabel = multiLabelOf(options);
    const dataset = await openDataset(options.data, {
      ...(cacheRecord ? { known: new Set(cacheRecord.files.map((f) => f.rel)) } : {}),
      val: options.val, test: options.test, seed: options.seed, size: options.inputSize ?? source.inputSize, resize: options.resize, maxPixels: options.maxPixels, ...(labels ? { labels } : {}), ...(multiLabel ? { multiLabel } : {}),
      onProgress: (done, total) => options.onProgress?.({ phase: 'decode', epoch: 0, epochs: 0, done, total }),
      shouldStop: () => Boolean(options.interrupt?.stop),
    });
    if (options.interrupt?.stop) {
      const signal = options.interrupt.stop === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
      throw new InterruptedError(signal, `Interrupted by ${signal} while decoding images; nothing was trained${options.resume ? '' : ' or written'}.`);
    }
    if (dataset.splits.train.length === 0) throw new UsageError(`No training images left in ${options.data} after holding out val and test.`);
    for (const note of dataset.layoutNotes) notice(note);
    const warnings = datasetWarnings(dataset, { val: options.val, test: options.test, classWeighted: options.classWeight === 'balanced' });
    for (const w of warnings) notice(w);
    // Said by the scan already; kept in the report.
    for (const o of dataset.outside) warnings.push(`${o.link} links outside the dataset (to ${o.target}): its ${o.images} images are counted under its class`);
    const splitRecord = { root: dataset.root, seed: options.seed, val: options.val, test: options.test, layout: dataset.layout, ...(labels ? { labels } : {}), ...(multiLabel ? { multiLabel } : {}), files: dataset.splitMap };
    return { checkpoint, source, dataset, cacheRecord, warnings, splitRecord };
  } catch (err) {
    disposeSource(source);
    throw err;
  }
}

/** The backbone as loaded (with a previous run's head, when it had one). */
export function disposeSource(source: Backbone): void {
  (source.withHead?.model ?? source.model).dispose();
}

/**
 * `--cache DIR`: the cache's record verified (its files' hashes) and compared with this run, field by field; every
 * image of the run must be in it, unchanged since. Returns the arrays by relative path.
 */
export async function checkedCache(options: RunOptions, record: CacheRecord, run: { model: string; frozenDigest: string; freeze: number; inputSize: number; preprocess: string; headEpochs: number }, dataset: Dataset): Promise<{ arrays: Map<string, Float32Array[]>; layers: string[] }> {
  const dir = options.cache!;
  if (options.augment !== 'none') throw new UsageError(`--cache ${dir}: the cache holds one output per image; --augment ${options.augment} changes the images every epoch.`);
  if (mixing(options)) throw new UsageError(`--cache ${dir}: the cache holds one output per image; --mixup and --cutmix mix the images of every batch.`);
  if (run.headEpochs > 0) throw new UsageError(`--cache ${dir}: a head phase cuts the whole backbone, not the cache's cut; leave out --head-epochs.`);
  const k = record.key;
  const differ = (what: string, cache: unknown, here: unknown) => new UsageError(`--cache ${dir} was computed with ${what} ${String(cache)}; this run uses ${String(here)}.`, { suggestion: 'Make the cache again with this run\'s settings (tl cache), or train with them.' });
  if (k.model !== run.model) throw differ('model', k.model, run.model);
  if (k.freeze !== run.freeze) throw differ('--freeze', k.freeze, run.freeze);
  if (k.frozenDigest !== run.frozenDigest) throw differ('frozen weights of sha256', k.frozenDigest.slice(0, 12), run.frozenDigest.slice(0, 12));
  if (k.inputSize !== run.inputSize) throw differ('--input-size', k.inputSize, run.inputSize);
  if (k.preprocess !== run.preprocess) throw differ('--preprocess', k.preprocess, run.preprocess);
  if (k.resize !== options.resize) throw differ('--resize', k.resize, options.resize);
  const byRel = new Map(record.files.map((f) => [f.rel, f]));
  for (const item of [...dataset.splits.train, ...dataset.splits.val, ...dataset.splits.test]) {
    const f = byRel.get(item.rel);
    if (!f) throw new UsageError(`--cache ${dir} has no outputs for ${item.path}: it was made from other images.`);
    const s = await stat(item.path);
    if (s.size !== f.size || Math.round(s.mtimeMs) !== f.mtimeMs) throw new UsageError(`--cache ${dir}: ${item.path} changed after the cache was made.`);
  }
  return { arrays: await loadCacheArrays(dir, record), layers: k.boundaryLayers };
}
