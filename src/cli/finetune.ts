// `tl finetune DATA`: fine-tune a pretrained model on a folder dataset.
import { readFile } from 'node:fs/promises';
import { runFile } from '../data/index.js';
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { InterruptedError, TlError, UsageError } from '../errors.js';
import { currentKeys, CURVE_OPTIONS, FINETUNE_OPTIONS, finetuneSchema, RENAMED, RESUMABLE, savedSettingsSchema } from '../options/finetune.js';
import { flagOfKey, schemaOf } from '../util/options.js';
import { addCommonOptions, addOptions, announceBackend, backendSchema, commonSchema, parseOptions, printJson } from './common.js';
import type { FinetuneOptions, FinetuneResult, ProgressEvent } from '../train/finetune.js';
import { downloadReporter, progress, type Io, type Progress } from './io.js';
import { refuseMultiLabel } from './options.js';
import { printMetrics, printMultiLabel } from './print-metrics.js';
import { calibrationLine } from '../report/headline.js';

/** The command line's own options: backend, output, --config and --resume are not settings of the run. */
const cliSchema = finetuneSchema.extend(commonSchema.shape).extend({ backend: backendSchema.optional() });

/** A --config file: any option by its camelCase name (as in `tl finetune --help`, e.g. batchSize), and data. */
const configFileSchema = cliSchema.partial().extend({ data: z.string().min(1).optional() }).strict();

/** What `--resume` may change: the settings the table marks, and how this process runs and prints. */
const RESUME_CHANGES = new Set([...RESUMABLE, 'backend', 'json', 'quiet']);
const RESUME_FLAGS = [...RESUME_CHANGES].map(flagOfKey).join(', ');

/** Reads and validates a --config file; problems name the file and the key. */
async function readConfigFile(path: string): Promise<Record<string, unknown>> {
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
  // Options renamed since are read under their new names.
  if (typeof json === 'object' && json !== null && !Array.isArray(json)) json = currentKeys(json as Record<string, unknown>);
  const parsed = configFileSchema.safeParse(json);
  // The file's own values: defaults are filled in once, when they meet the flags given.
  if (parsed.success) return json as Record<string, unknown>;
  const issue = parsed.error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? ` '${issue.keys.join("', '")}'` : '';
  const where = issue.path.length ? ` key '${issue.path.map(String).join('.')}'` : '';
  throw new UsageError(`--config ${path}:${where}${keys}: ${issue.message}.`, { suggestion: 'Keys are the option names in camelCase, e.g. "batchSize"; see `tl finetune --help`.' });
}

/** The options of the run in `dir`, from its config.json. */
async function readRunOptions(dir: string): Promise<z.output<typeof savedSettingsSchema>> {
  const path = runFile(dir, 'config');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--resume ${dir}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is it a folder tl finetune wrote?`);
  }
  const parsed = savedSettingsSchema.safeParse(json);
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

type CliOptions = z.output<typeof cliSchema>;

/** The commands that take tl finetune's options. */
type Mode = 'finetune' | 'lr-find' | 'curve';

const curveSchema = schemaOf(CURVE_OPTIONS);

/** What a command line asks for: the parsed options, the run's options (its own config when resuming), where it goes. */
interface Asked {
  opts: CliOptions;
  options: FinetuneOptions;
  resumeDir: string | undefined;
  backend: Awaited<ReturnType<typeof import('../backend/index.js').loadBackend>>;
}

/** Flags, --config and --resume merged and checked; the backend loaded and the engine resolved (both announced). */
async function readAsked(io: Io, dataArg: string | undefined, raw: Record<string, unknown>, mode: Mode): Promise<Asked> {
  // Commander sets no defaults: `raw` holds the flags given, and the schema fills in the rest once.
  const { config: configPath, resume: resumeArg, ...fromCli } = raw;
  const resumeDir = typeof resumeArg === 'string' ? resumeArg : undefined;
  if (mode !== 'finetune' && resumeDir) throw new UsageError(`tl ${mode} starts from the model, not from a run: --resume does not apply.`);
  const renamed = Object.keys(fromCli).find((key) => key in RENAMED);
  if (renamed !== undefined) throw new UsageError(`${flagOfKey(renamed)} is now ${flagOfKey(RENAMED[renamed]!)} (same meaning).`);
  if (resumeDir && configPath !== undefined) throw new UsageError('--resume and --config cannot be combined: a resumed run keeps its own config.');
  const fromFile = typeof configPath === 'string' ? await readConfigFile(configPath) : {};
  const opts = parseOptions(cliSchema, { ...fromFile, ...fromCli });
  let saved: z.output<typeof savedSettingsSchema> | null = null;
  if (resumeDir) {
    const fixed = Object.keys(fromCli).filter((k) => !RESUME_CHANGES.has(k));
    if (fixed.length > 0) throw new UsageError(`--resume keeps the run's own settings; ${flagOfKey(fixed[0]!)} cannot change (allowed: ${RESUME_FLAGS}).`);
    saved = await readRunOptions(resumeDir);
  }
  const data = dataArg ?? (fromFile.data as string | undefined) ?? saved?.data;
  if (data === undefined) throw new UsageError('Missing DATA: give a dataset folder, "data" in --config, or --resume RUN.');
  const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
  const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
  const { resolveEngine } = await import('../engine/index.js');
  // Checkpoints are the same on both engines, so a resumed run may change engine.
  const engine = await resolveEngine(saved && !('engine' in fromCli) ? saved.engine ?? opts.engine : opts.engine, opts.device);
  announceBackend(io, backend.info, opts, engine, true);
  const out = resumeDir ?? opts.out ?? defaultOutDir(opts.model, data, mode === 'finetune' ? '' : `${mode}-`);
  // A resumed run: its own settings, with what --resume may change; a new one: the settings as given.
  const given = Object.fromEntries(Object.keys(fromCli).filter((k) => RESUMABLE.includes(k)).map((k) => [k, opts[k as keyof typeof opts]]));
  const { storeRoot } = await import('../store/index.js');
  const store = storeRoot(io.env);
  const options: FinetuneOptions = saved
    ? { ...saved, ...given, data, out, resume: true, engine: engine.name, store }
    : { ...opts, data, out, lr: mode === 'lr-find' ? 'find' : opts.lr, engine: engine.name, store };
  return { opts, options, resumeDir, backend };
}

/**
 * Runs `fn` with SIGINT/SIGTERM handled (on a real process): the first finishes the batch, writes a checkpoint and the
 * run folder, and exits 130/143; the second exits at once (every file already written is whole, being written by rename).
 */
async function withInterrupt<T>(io: Io, fn: (interrupt: { stop: 'SIGINT' | 'SIGTERM' | null; signal: AbortSignal }) => Promise<T>): Promise<T> {
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
  try {
    return await fn(interrupt);
  } finally {
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
  }
}

/** `tl lr-find`: the range test, its curve as text and the suggestion. */
async function runLrFind(io: Io, { opts, options, backend }: Asked, spinner: Progress): Promise<void> {
  const { lrFind } = await import('../train/finetune.js');
  const { textPlot } = await import('../train/lr-find.js');
  const found = await lrFind(backend.tf, backend.info, {
    ...options,
    uniqueOut: opts.out === undefined,
    onDownload: downloadReporter(io, spinner, opts),
    onProgress: (e) => {
      if (e.phase === 'decode') return spinner.update(`decoding images ${e.done}/${e.total}`);
      if (e.phase === 'frozen') return spinner.update(`frozen part ${bar(e.done / e.total)} ${e.done}/${e.total} images`);
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
}

/** `tl curve`: the fine-tunes at each size, then the table, the fitted laws in words and the files. */
async function runCurve(io: Io, { opts, options, backend }: Asked, spinner: Progress, curve: z.output<typeof curveSchema>): Promise<void> {
  refuseMultiLabel(opts, 'tl curve');
  const { learningCurve, parseCurveSizes, curveSentences } = await import('../train/curve.js');
  const { finetune } = await import('../train/finetune.js');
  const result = await learningCurve(backend.tf, backend.info, options, {
    sizes: parseCurveSizes(curve.sizes),
    scratch: curve.scratch,
    onRun: (arm, size, i, total) => {
      spinner.update(`run ${i + 1}/${total}: ${arm}, ${size} images per class`);
      if (!io.isTTY && !opts.quiet && !opts.json) io.err(`run ${i + 1}/${total}: ${arm}, ${size} images per class\n`);
    },
  }, (o) => finetune(backend.tf, backend.info, { ...o, onDownload: downloadReporter(io, spinner, opts) })).catch((err: unknown) => {
    spinner.fail();
    throw err;
  });
  spinner.succeed(`${result.points.length} fine-tunes`);
  if (opts.json) return printJson(io, result);
  const arms = result.arms.map((a) => a.arm);
  const table = new Table({ head: ['images per class', ...arms.map((a) => `${a} test acc`)], style: { head: [], border: [] } });
  for (const size of [...new Set(result.points.map((p) => p.size))]) {
    const row = arms.map((a) => result.points.find((p) => p.arm === a && p.size === size)!);
    table.push([`${row[0]!.perClass.toFixed(size === 'all' ? 1 : 0)}${size === 'all' ? ' (all)' : ''}`, ...row.map((p) => `${(p.testAccuracy * 100).toFixed(1)}%`)]);
  }
  io.out(`${table.toString()}\ntest split: ${result.testImages} images, the same for every run\n`);
  for (const line of curveSentences(result)) io.out(`${line}\n`);
  io.out(`wrote ${result.files.join(', ')}\n`);
}

/** Progress of a run on the spinner, and each finished epoch as a line that stays. */
function trainingProgress(io: Io, opts: CliOptions, spinner: Progress): (e: ProgressEvent) => void {
  let decodingSaid = false;
  let frozenSaid = false;
  const epochSeconds: number[] = [];
  return (e) => {
    if (e.phase === 'decode') {
      if (!decodingSaid && !io.isTTY && !opts.quiet && !opts.json) io.err(`decoding ${e.total} images\n`);
      decodingSaid = true;
      return spinner.update(`decoding images ${e.done}/${e.total}`);
    }
    if (e.phase === 'frozen') {
      if (!frozenSaid && !io.isTTY && !opts.quiet && !opts.json) io.err(`computing the frozen part's outputs for ${e.total} images\n`);
      frozenSaid = true;
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
  };
}

/** The finished run in words: the epochs' table, phases, engines, test metrics, calibration, what was saved. */
function printRun(io: Io, result: FinetuneResult, showStop: boolean): void {
  const out = result.outDir;
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
  if (result.multiLabel) {
    io.out(`test split (${result.test!.count} images), each label at its threshold tuned on the validation split:\n`);
    printMultiLabel(io, result.multiLabel);
  }
  if (result.calibration) io.out(`${calibrationLine(result.calibration)}\n`);
  if (result.suspects?.length) io.out(`${result.suspects.length} test image${result.suspects.length > 1 ? 's' : ''} whose label is probably wrong (e.g. ${result.suspects[0]!.path}: given ${result.suspects[0]!.given}, likely ${result.suspects[0]!.likely}); report.html shows them\n`);
  io.out(`frozen ${result.frozenLayers}/${result.totalLayers} backbone layers, ${result.trainableParams} trainable parameters, feature cache ${result.cache.enabled ? `hit rate ${(result.cache.hitRate * 100).toFixed(0)}%` : 'off'}${result.frozenPass ? ` (frozen part run once over ${result.frozenPass.images} images in ${result.frozenPass.seconds.toFixed(1)} s)` : ''}\n`);
  if (result.best) io.out(`saved the weights of epoch ${result.best.epoch} (best ${result.best.monitor} ${result.best.value.toFixed(4)})\n`);
  if (result.stopReason && showStop) io.out(`${result.stopReason}\n`);
  if (result.skipped.length) io.out(`skipped ${result.skipped.length} file(s); see ${out}/report.json\n`);
  io.out(`wrote ${out} (report: ${out}/report.html)\n`);
}

/**
 * `tl finetune`, and `tl lr-find` (the same options: the range test runs on the run `tl finetune` would start, then
 * stops; `tl finetune --lr find` runs it and trains at its suggestion).
 */
const DESCRIPTIONS: Record<Mode, string> = {
  finetune: 'fine-tune a pretrained model on DATA/<class>/<image> and write the model, metrics and report',
  'lr-find': "the learning-rate range test on the run `tl finetune` would start (same options): the loss curve over exponentially growing rates and a suggested --lr, with lr-find.svg in the run folder",
  curve: 'test accuracy against the number of labelled images: fine-tunes (same options) on nested subsets of the training split, on one fixed test split, with a fitted power law and what doubling the labels would give; curve.json, .md, .svg',
};

export function finetuneCommand(io: Io, mode: Mode = 'finetune'): Command {
  const cmd = new Command(mode)
    .description(DESCRIPTIONS[mode])
    .argument('[DATA]', 'dataset folder (or "data" in --config, or the resumed run\'s)');
  addOptions(cmd, FINETUNE_OPTIONS);
  if (mode === 'curve') addOptions(cmd, CURVE_OPTIONS);
  // Old names of renamed options: refused with the new name (hidden from help).
  for (const old of Object.keys(RENAMED)) cmd.addOption(new Option(`${flagOfKey(old)} <value>`).hideHelp());
  cmd
    .option('--config <file.json>', 'options from a JSON file, keys in camelCase ("batchSize"); flags given here override it')
    .option('--resume <run>', `continue the run in this folder from its last checkpoint, with its config (only ${RESUME_FLAGS} may change)`);
  addCommonOptions(cmd, { backend: true });
  cmd.action(async (dataArg: string | undefined, given: Record<string, unknown>) => {
    const { sizes, scratch, ...raw } = given;
    const curve = mode === 'curve' ? parseOptions(curveSchema, { sizes, scratch }) : null;
    const asked = await readAsked(io, dataArg, raw, mode);
    const { opts, options, resumeDir, backend } = asked;
    const spinner = progress(io, 'preparing', opts);
    if (mode === 'lr-find') return runLrFind(io, asked, spinner);
    if (curve) return runCurve(io, asked, spinner, curve);
    const { finetune } = await import('../train/finetune.js');
    const { result, stopped } = await withInterrupt(io, async (interrupt) => {
      const onProgress = trainingProgress(io, opts, spinner);
      const uniqueOut = resumeDir === undefined && opts.out === undefined;
      const run = await finetune(backend.tf, backend.info, { ...options, interrupt, uniqueOut, onDownload: downloadReporter(io, spinner, opts), onProgress }).catch((err: unknown) => {
        spinner.fail();
        throw err;
      });
      return { result: run, stopped: interrupt.stop };
    });
    const out = result.outDir;
    const diverged = result.stopReason !== null && !result.stopReason.startsWith('early stopping') && stopped === null;
    if (diverged) spinner.fail(`stopped after ${result.history.length} epochs`);
    else spinner.succeed(`trained ${result.history.length} epochs`);
    if (opts.json) printJson(io, result);
    else printRun(io, result, !diverged && !stopped);
    if (stopped) throw new InterruptedError(stopped, `${result.stopReason}; the model and a partial report are in ${out}.`);
    if (diverged) throw new TlError('E_DIVERGED', `Training diverged: ${result.stopReason}.`, { suggestion: 'Lower --lr; the run folder holds the kept model and report.' });
  });
  return cmd;
}
