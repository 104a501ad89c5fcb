// `tl finetune DATA`: fine-tune a pretrained model on a folder dataset.
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { InterruptedError, TlError, UsageError } from '../errors.js';
import { savedOptionsSchema, type SavedOptions } from '../train/config.js';
import { addCommonOptions, addEngineOption, announceBackend, backendSchema, commonSchema, deviceSchema, engineSchema, numeric, numericOrAuto, parseOptions, printJson } from './common.js';
import { dataOptions, dataSchema } from './options.js';
import type { FinetuneOptions, ProgressEvent } from '../train/finetune.js';
import { downloadReporter, progress, type Io } from './io.js';
import { printMetrics } from './metrics.js';
import { calibrationLine } from '../report/headline.js';

export const DEFAULT_MODEL = 'mobilenet_v2.nsfwjs';

const finetuneSchema = commonSchema.extend(dataSchema.shape).extend({
  backend: backendSchema.optional(),
  engine: engineSchema,
  device: deviceSchema,
  model: z.string().min(1),
  freeze: z.union([z.number().int().min(0).transform(String), z.string().regex(/^(all|\d+|[\w./-]+)$/, 'expected a layer count, a layer name, or all')]),
  epochs: numericOrAuto(z.number().int().min(1).max(10_000)),
  headEpochs: numeric(z.number().int().min(0).max(10_000)),
  batchSize: numeric(z.number().int().min(1).max(4096)),
  lr: z.union([z.literal('find'), numericOrAuto(z.number().positive().max(10))]),
  minLr: numeric(z.number().positive().max(10)).optional(),
  maxLr: numeric(z.number().positive().max(1000)).optional(),
  lrFindSteps: numeric(z.number().int().min(10).max(10_000)).optional(),
  finetuneLr: numeric(z.number().positive().max(10)).optional(),
  optimizer: z.enum(['adam', 'sgd', 'rmsprop']),
  momentum: numeric(z.number().min(0).max(0.999)).optional(),
  nesterov: z.boolean().default(false),
  schedule: z.enum(['constant', 'cosine', 'step']),
  warmupEpochs: numeric(z.number().min(0).max(10_000)),
  stepEpochs: numeric(z.number().int().min(1)).optional(),
  gamma: numeric(z.number().positive().max(1)),
  weightDecay: numeric(z.number().min(0).max(1)),
  labelSmoothing: numeric(z.number().min(0).max(0.99)),
  classWeight: z.enum(['none', 'balanced']),
  accumulate: numeric(z.number().int().min(1).max(1024)),
  bn: z.enum(['frozen', 'train', 'auto']),
  bnMomentum: numeric(z.number().min(0).max(0.9999)).optional(),
  headHidden: numeric(z.number().int().min(1)).optional(),
  dropout: numeric(z.number().min(0).max(0.95)),
  augment: z.enum(['none', 'light', 'standard']),
  inputSize: numeric(z.number().int().min(32).max(1024)).optional(),
  preprocess: z.enum(['caffe', 'tf', 'torch', 'raw01', 'none']).optional(),
  weights: z.enum(['pretrained', 'random']),
  out: z.string().optional(),
  featureCacheMb: numeric(z.number().int().min(0)),
  workers: z.union([z.literal('auto'), numeric(z.number().int().min(1).max(64))]),
  monitor: z.enum(['val_loss', 'val_accuracy']),
  patience: numeric(z.number().int().min(1)).optional(),
  calibrate: z.enum(['temperature', 'none']),
  newHead: z.boolean().default(false),
  arch: z.string().min(1).optional(),
  features: z.string().min(1).optional(),
});

/** A --config file: any option by its camelCase name (as in `tl finetune --help`, e.g. batchSize), and data. */
const configFileSchema = finetuneSchema.partial().extend({ data: z.string().min(1).optional() }).strict();

/** Options a resumed run may change; every other one is fixed by the run's config.json. */
const RESUME_OVERRIDES = new Set(['epochs', 'patience', 'workers', 'featureCacheMb', 'backend', 'engine', 'device', 'json', 'quiet']);

/** Reads and validates a --config file; problems name the file and the key. */
async function readConfigFile(path: string): Promise<z.infer<typeof configFileSchema>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`Cannot read --config ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config ${path} is not valid JSON: ${(err as Error).message}.`);
  }
  const parsed = configFileSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? ` '${issue.keys.join("', '")}'` : '';
  const where = issue.path.length ? ` key '${issue.path.map(String).join('.')}'` : '';
  throw new UsageError(`--config ${path}:${where}${keys}: ${issue.message}.`, { suggestion: 'Keys are the option names in camelCase, e.g. "batchSize"; see `tl finetune --help`.' });
}

/** The options of the run in `dir`, from its config.json. */
async function readRunOptions(dir: string): Promise<SavedOptions> {
  const path = join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--resume ${dir}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is it a folder tl finetune wrote?`);
  }
  const parsed = savedOptionsSchema.safeParse(json);
  if (!parsed.success) throw new UsageError(`--resume ${dir}: ${path} is not a tl run config (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}).`);
  return parsed.data;
}

/** `epoch 3/8` with the phase of a two-phase run: `epoch 3/8 (fine-tune)`. */
export function epochLabel(e: Pick<ProgressEvent, 'epoch' | 'epochs' | 'stage'>): string {
  return `epoch ${e.epoch}/${e.epochs}${e.stage === 'head' ? ' (head)' : e.stage === 'finetune' ? ' (fine-tune)' : ''}`;
}

/** One finished epoch, as it stays on screen. */
export function epochLine(e: ProgressEvent): string {
  const r = e.row!;
  return `${epochLabel(e)}: loss ${r.loss.toFixed(4)} acc ${r.accuracy.toFixed(3)} val_loss ${r.val_loss?.toFixed(4) ?? '-'} val_acc ${r.val_accuracy?.toFixed(3) ?? '-'} ${r.img_per_s.toFixed(1)} img/s ${r.seconds.toFixed(1)} s`;
}

function bar(fraction: number, width = 20): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function defaultOutDir(model: string, data: string, prefix = ''): string {
  const stamp = new Date().toISOString().replace(/[:T]/g, '-').replace(/\..+$/, '');
  const dataset = data.replace(/[/\\]+$/, '').split(/[/\\]/).pop() || 'data';
  return `models/${prefix}${model.replace(/[^\w.-]/g, '_')}-${dataset}-${stamp}`;
}

/**
 * `tl finetune`, and `tl lr-find` (the same options: the range test runs on the run `tl finetune` would start, then
 * stops; `tl finetune --lr find` runs it and trains at its suggestion).
 */
export function finetuneCommand(io: Io, mode: 'finetune' | 'lr-find' = 'finetune'): Command {
  const cmd = new Command(mode)
    .description(mode === 'finetune' ? 'fine-tune a pretrained model on DATA/<class>/<image> and write the model, metrics and report' : "the learning-rate range test on the run `tl finetune` would start (same options): the loss curve over exponentially growing rates and a suggested --lr, with lr-find.svg in the run folder")
    .argument('[DATA]', 'dataset folder (or "data" in --config, or the resumed run\'s)')
    .option('-m, --model <name|path|url>', 'registry model (see `tl models`), a run folder tl wrote, a tfjs model folder, a Keras .h5 file (weights or full model) of a registry architecture, or a model.json URL', DEFAULT_MODEL)
    .option('--arch <name>', 'with a Keras .h5 file as --model: the registry architecture it holds, when neither its file name nor its model config tells')
    .option('--freeze <n|layer|all|default>', "freeze layers 0..N-1 of the backbone (Keras indices), up to a named layer, or 'all' (head only); default: the model's published fine-tuning point (mobilenet_v2 100, inception_v3 249, resnet conv5; see `tl models info`), else all", 'default')
    .option('--epochs <n|auto>', 'training epochs (of the second phase, with --head-epochs); auto: 3 when backbone layers train, 10 for the head alone', 'auto')
    .option('--head-epochs <n>', 'first train the head alone (whole backbone frozen) for n epochs, then --epochs at --freeze and --finetune-lr', '0')
    .option('--batch-size <n>', 'images per optimizer step', '16')
    .option('--lr <rate|auto|find>', 'learning rate; auto: 0.001 for the head alone (and the head phase), 0.0001 when backbone layers train; find: the suggestion of a learning-rate range test (see `tl lr-find`)', 'auto')
    .option('--min-lr <rate>', 'range test (--lr find, tl lr-find): first rate', '1e-7')
    .option('--max-lr <rate>', 'range test: last rate', '10')
    .option('--lr-find-steps <n>', 'range test: steps (the rate grows exponentially from --min-lr to --max-lr)', '100')
    .option('--finetune-lr <rate>', 'learning rate of the second phase (default: --lr / 10)')
    .option('--optimizer <name>', 'adam | sgd | rmsprop', 'adam')
    .option('--momentum <m>', 'momentum of sgd (default 0.9) and rmsprop (default 0)')
    .option('--nesterov', 'Nesterov momentum (sgd)')
    .option('--schedule <name>', 'learning-rate schedule per phase: constant | cosine (decay to 0) | step', 'constant')
    .option('--warmup-epochs <n>', 'linear warmup at the start of each phase (fractions allowed)', '0')
    .option('--step-epochs <n>', 'step schedule: decay every n epochs (default: a third of --epochs)')
    .option('--gamma <g>', 'step schedule: multiply the rate by g at each step', '0.1')
    .option('--weight-decay <wd>', 'decoupled weight decay on the trainable weights (AdamW with adam)', '0')
    .option('--label-smoothing <s>', 'targets become (1-s) one-hot + s/classes', '0')
    .option('--class-weight <mode>', 'none | balanced (weigh each class by n / (classes x its images), for imbalanced folders)', 'none')
    .option('--accumulate <k>', 'split each batch into k micro-batches and accumulate gradients (saves memory)', '1')
    .option('--bn <mode>', 'BatchNormalization layers in the trainable part: frozen (inference mode, the Keras advice for pretrained weights) | train (batch statistics; moving statistics recomputed over training images before each validation) | auto (train with --weights random, else frozen)', 'auto')
    .option('--bn-momentum <m>', "momentum of BatchNormalization's moving averages (default: the architecture's, e.g. 0.999 for MobileNetV2)")
    .option('--new-head', 'with a run as --model: train a new classifier head even when its classes match (by default a run continues with its own head)')
    .option('--head-hidden <units>', 'add a hidden dense layer to the head')
    .option('--dropout <rate>', 'dropout before the classifier', '0.2')
    .option('--augment <level>', 'training augmentation: none | light | standard (none lets the frozen part be cached)', 'none')
    .option('--input-size <px>', "input size (default: the model's)")
    .option('--preprocess <mode>', "caffe | tf | torch | raw01 | none (default: the model's)")
    .option('--weights <source>', 'pretrained | random', 'pretrained')
    .option('--workers <n|auto>', 'threads computing gradients (data-parallel replicas of the trainable part); auto: one per core on wasm and cpu, 1 on tensorflow', 'auto')
    .option('--monitor <metric>', 'val_loss | val_accuracy: picks the best epoch, whose weights are saved', 'val_loss')
    .option('--patience <epochs>', 'stop early after this many epochs (of the last phase) without improvement of --monitor')
    .option('--calibrate <method>', 'temperature: after training, fit a temperature on the validation split and fold it into the classifier (predictions unchanged, probabilities calibrated) | none', 'temperature')
    .option('--features <dir>', 'train the tail from a frozen-part cache (`tl cache`, or `tl merge` of its shards) instead of running the frozen part; it must match the model, weights, --freeze, input size, preprocessing, resize and images')
    .option('--feature-cache-mb <n>', 'memory for cached frozen-part outputs; beyond it they spill to disk', '2048')
    .option('-o, --out <dir>', 'run folder (default: models/<model>-<dataset>-<time>)')
    .option('--config <file.json>', 'options from a JSON file, keys in camelCase ("batchSize"); flags given here override it')
    .option('--resume <run>', "continue the run in this folder from its last checkpoint, with its config (only --epochs, --patience, --workers, --feature-cache-mb and --backend may change)");
  dataOptions(cmd);
  addEngineOption(cmd, 'the frozen part');
  addCommonOptions(cmd, { backend: true });
  cmd.action(async (dataArg: string | undefined, raw: Record<string, unknown>) => {
    const fromCli = Object.fromEntries(Object.entries(raw).filter(([key]) => cmd.getOptionValueSource(key) === 'cli'));
    const resumeDir = typeof raw.resume === 'string' ? raw.resume : undefined;
    if (resumeDir && raw.config !== undefined) throw new UsageError('--resume and --config cannot be combined: a resumed run keeps its own config.');
    const fromFile = typeof raw.config === 'string' ? await readConfigFile(raw.config) : {};
    const { config: _config, resume: _resume, ...defaults } = raw;
    const opts = parseOptions(finetuneSchema, { ...defaults, ...fromFile, ...fromCli });
    let saved: SavedOptions | null = null;
    if (resumeDir) {
      const fixed = Object.keys(fromCli).filter((k) => !RESUME_OVERRIDES.has(k) && k !== 'resume');
      if (fixed.length > 0) throw new UsageError(`--resume keeps the run's own settings; --${fixed[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} cannot change (allowed: --epochs, --patience, --workers, --feature-cache-mb, --backend, --engine, --device).`);
      saved = await readRunOptions(resumeDir);
    }
    const data = dataArg ?? fromFile.data ?? saved?.data;
    if (data === undefined) throw new UsageError('Missing DATA: give a dataset folder, "data" in --config, or --resume RUN.');
    const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
    const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    const { resolveEngine } = await import('../engine/index.js');
    // Checkpoints are the same on both engines, so a resumed run may change engine.
    const engine = await resolveEngine(saved && !('engine' in fromCli) ? saved.engine ?? opts.engine : opts.engine, opts.device);
    announceBackend(io, backend.info, opts, engine, true);
    const { finetune } = await import('../train/finetune.js');
    if (mode === 'lr-find' && resumeDir) throw new UsageError('tl lr-find starts from the model, not from a run: --resume does not apply.');
    let out = resumeDir ?? opts.out ?? defaultOutDir(opts.model, data, mode === 'lr-find' ? 'lr-find-' : '');
    const spinner = progress(io, 'preparing', opts);
    // First SIGINT/SIGTERM: finish the batch, write a checkpoint and the run folder, exit 130/143. Second: exit at
    // once (every file already written is whole, being written by rename).
    const aborter = new AbortController();
    const interrupt: { stop: 'SIGINT' | 'SIGTERM' | null; signal: AbortSignal } = { stop: null, signal: aborter.signal };
    const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
      if (interrupt.stop !== null) process.exit(signal === 'SIGINT' ? 130 : 143);
      interrupt.stop = signal;
      // A download in progress stops now (training stops after its batch).
      aborter.abort(signal);
      io.err(`\n${signal}: finishing the current batch and writing the run folder (${signal === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to quit at once)\n`);
    };
    const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
    if (io.errStream) {
      process.on('SIGINT', handlers.SIGINT);
      process.on('SIGTERM', handlers.SIGTERM);
    }
    const workers = opts.workers === 'auto' ? (backend.info.name === 'tensorflow' ? 1 : availableParallelism()) : opts.workers;
    const given = (key: string) => key in fromCli;
    const options: FinetuneOptions = saved
      ? {
          ...saved,
          data,
          out,
          resume: true,
          ...(given('epochs') ? { epochs: opts.epochs } : {}),
          ...(given('patience') ? { patience: opts.patience } : {}),
          ...(given('workers') ? { workers } : {}),
          ...(given('featureCacheMb') ? { featureCacheBytes: opts.featureCacheMb * 1024 * 1024 } : {}),
          engine: engine.name,
        }
      : {
          data,
          model: opts.model,
          out,
          freeze: opts.freeze,
          epochs: opts.epochs,
          headEpochs: opts.headEpochs,
          batchSize: opts.batchSize,
          lr: mode === 'lr-find' ? 'find' : opts.lr,
          lrFind: { ...(opts.minLr ? { minLr: opts.minLr } : {}), ...(opts.maxLr ? { maxLr: opts.maxLr } : {}), ...(opts.lrFindSteps ? { steps: opts.lrFindSteps } : {}) },
          ...(opts.finetuneLr ? { finetuneLr: opts.finetuneLr } : {}),
          optimizer: opts.optimizer,
          ...(opts.momentum !== undefined ? { momentum: opts.momentum } : {}),
          nesterov: opts.nesterov,
          schedule: opts.schedule,
          warmupEpochs: opts.warmupEpochs,
          ...(opts.stepEpochs ? { stepEpochs: opts.stepEpochs } : {}),
          gamma: opts.gamma,
          weightDecay: opts.weightDecay,
          labelSmoothing: opts.labelSmoothing,
          classWeight: opts.classWeight,
          accumulate: opts.accumulate,
          bn: opts.bn,
          ...(opts.bnMomentum !== undefined ? { bnMomentum: opts.bnMomentum } : {}),
          ...(opts.headHidden ? { headHidden: opts.headHidden } : {}),
          dropout: opts.dropout,
          augment: opts.augment,
          ...(opts.inputSize ? { inputSize: opts.inputSize } : {}),
          ...(opts.preprocess ? { preprocess: opts.preprocess } : {}),
          val: opts.val,
          test: opts.test,
          seed: opts.seed,
          resize: opts.resize,
          maxPixels: opts.maxPixels,
          weights: opts.weights,
          featureCacheBytes: opts.featureCacheMb * 1024 * 1024,
          monitor: opts.monitor,
          ...(opts.patience ? { patience: opts.patience } : {}),
          calibrate: opts.calibrate,
          ...(opts.newHead ? { newHead: true } : {}),
          ...(opts.arch ? { arch: opts.arch } : {}),
          ...(opts.features ? { features: opts.features } : {}),
          workers,
          engine: engine.name,
        };
    if (mode === 'lr-find') {
      const { lrFind } = await import('../train/finetune.js');
      const { textPlot } = await import('../train/lr-find.js');
      const found = await lrFind(backend.tf, backend.info, {
        ...options,
        uniqueOut: opts.out === undefined,
        onDownload: downloadReporter(io, spinner, opts),
        onProgress: (e) => {
          if (e.phase === 'decode') return spinner.update(`decoding images ${e.done}/${e.total}`);
          if (e.phase === 'features') return spinner.update(`frozen part ${bar(e.done / e.total)} ${e.done}/${e.total} images`);
          if (e.phase === 'lr-find') return spinner.update(`range test ${bar(e.done / e.total)} step ${e.done}/${e.total} loss ${e.loss?.toFixed(4)}`);
        },
      }).catch((err: unknown) => {
        spinner.fail();
        throw err;
      });
      spinner.succeed(`range test: ${found.lrs.length} steps`);
      if (opts.json) return printJson(io, found);
      io.out(`${textPlot(found)}\n`);
      if (found.stoppedEarly) io.out(`stopped early: ${found.stoppedEarly}\n`);
      io.out(`suggested --lr ${Number(found.suggestion.toPrecision(2))} (the steepest descent of the smoothed loss, before its minimum)\n`);
      io.out(`wrote ${found.files.svg} and ${found.files.json}\n`);
      return;
    }
    let result: Awaited<ReturnType<typeof finetune>>;
    let decodingSaid = false;
    let featuresSaid = false;
    const epochSeconds: number[] = [];
    try {
      result = await finetune(backend.tf, backend.info, {
        ...options,
        interrupt,
        uniqueOut: resumeDir === undefined && opts.out === undefined,
        onDownload: downloadReporter(io, spinner, opts),
        onProgress: (e) => {
          if (e.phase === 'decode') {
            if (!decodingSaid && !io.isTTY && !opts.quiet && !opts.json) io.err(`decoding ${e.total} images\n`);
            decodingSaid = true;
            return spinner.update(`decoding images ${e.done}/${e.total}`);
          }
          if (e.phase === 'features') {
            if (!featuresSaid && !io.isTTY && !opts.quiet && !opts.json) io.err(`computing the frozen part's outputs for ${e.total} images\n`);
            featuresSaid = true;
            return spinner.update(`frozen part ${bar(e.done / e.total)} ${e.done}/${e.total} images (once, before training)`);
          }
          if (e.phase === 'validate') return spinner.update(`${epochLabel(e)} validating ${e.done}/${e.total}`);
          if (e.phase === 'epoch') {
            const r = e.row!;
            epochSeconds.push(r.seconds);
            // Each finished epoch stays on screen: above the spinner on a terminal, as a line elsewhere.
            if (!opts.quiet && !opts.json) (io.isTTY ? spinner.log : io.err)(`${epochLine(e)}\n`);
            return;
          }
          // The run's ETA: this epoch's, then the remaining epochs at the pace so far.
          const perEpoch = epochSeconds.length > 0 ? epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length : (e.etaSeconds ?? 0) + (e.done / (e.imagesPerSecond || 1));
          const runEta = (e.etaSeconds ?? 0) + perEpoch * (e.epochs - e.epoch);
          spinner.update(`${epochLabel(e)} ${bar(e.done / e.total)} ${e.done}/${e.total} loss ${e.loss?.toFixed(4)} acc ${e.accuracy?.toFixed(3)} ${e.imagesPerSecond?.toFixed(1)} img/s · epoch ETA ${duration(e.etaSeconds ?? 0)} · run ETA ${duration(runEta)}`);
        },
      });
    } catch (err) {
      spinner.fail();
      throw err;
    } finally {
      process.off('SIGINT', handlers.SIGINT);
      process.off('SIGTERM', handlers.SIGTERM);
    }
    out = result.outDir;
    const stopped = interrupt.stop;
    const diverged = result.stopReason !== null && !result.stopReason.startsWith('early stopping') && stopped === null;
    if (diverged) spinner.fail(`stopped after ${result.history.length} epochs`);
    else spinner.succeed(`trained ${result.history.length} epochs`);
    if (opts.json) {
      printJson(io, result);
      if (stopped) throw new InterruptedError(stopped, `${result.stopReason}; the model and a partial report are in ${out}.`);
      if (diverged) throw new TlError('E_DIVERGED', `Training diverged: ${result.stopReason}.`, { suggestion: 'Lower --lr; the run folder holds the kept model and report.' });
      return;
    }
    const table = new Table({ head: ['epoch', 'loss', 'acc', 'val loss', 'val acc', 's', 'img/s'], style: { head: [], border: [] } });
    for (const r of result.history) table.push([r.epoch, r.loss.toFixed(4), r.accuracy.toFixed(3), r.val_loss?.toFixed(4) ?? '-', r.val_accuracy?.toFixed(3) ?? '-', r.seconds.toFixed(1), r.img_per_s.toFixed(1)]);
    io.out(`${table.toString()}\n`);
    if (result.resumedFrom) io.out(`resumed at epoch ${result.resumedFrom.epoch}${result.resumedFrom.batches ? ` after ${result.resumedFrom.batches} batches` : ''} from ${out}/checkpoints/last.ckpt\n`);
    if (result.phases.length > 1) io.out(`${result.phases.map((p) => `${p.name} phase: epochs ${p.first}-${p.last}, ${p.frozenLayers} layers frozen, lr ${p.lr}`).join('; ')}\n`);
    const trainedOn = [...new Set(result.phases.flatMap((p) => (p.engine ? [p.engine === 'onnx' ? 'ONNX Runtime' : 'TensorFlow.js'] : [])))];
    if (trainedOn.length > 0) io.out(`trained on ${trainedOn.join(' and ')}\n`);
    if (result.metrics) {
      io.out(`test split (${result.test!.count} images):\n`);
      printMetrics(io, result.metrics);
    }
    if (result.calibration) io.out(`${calibrationLine(result.calibration)}\n`);
    io.out(`frozen ${result.frozenLayers}/${result.totalLayers} backbone layers, ${result.trainableParams} trainable parameters, feature cache ${result.cache.enabled ? `hit rate ${(result.cache.hitRate * 100).toFixed(0)}%` : 'off'}${result.frozenPass ? ` (frozen part run once over ${result.frozenPass.images} images in ${result.frozenPass.seconds.toFixed(1)} s)` : ''}\n`);
    if (result.best) io.out(`saved the weights of epoch ${result.best.epoch} (best ${result.best.monitor} ${result.best.value.toFixed(4)})\n`);
    if (result.stopReason && !diverged && !stopped) io.out(`${result.stopReason}\n`);
    if (result.skipped.length) io.out(`skipped ${result.skipped.length} file(s); see ${out}/report.json\n`);
    io.out(`wrote ${out} (report: ${out}/report.html)\n`);
    if (diverged) throw new TlError('E_DIVERGED', `Training diverged: ${result.stopReason}.`, { suggestion: 'Lower --lr; the run folder holds the kept model and report.' });
    if (stopped) throw new InterruptedError(stopped, `${result.stopReason}; the model and a partial report are in ${out}.`);
  });
  return cmd;
}
