// `tl finetune DATA`: fine-tune a pretrained model on a folder dataset.
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { InterruptedError, TlError } from '../errors.js';
import { addCommonOptions, announceBackend, backendSchema, commonSchema, parseOptions, printJson } from './common.js';
import { dataOptions, dataSchema } from './options.js';
import { downloadReporter, progress, type Io } from './io.js';

export const DEFAULT_MODEL = 'mobilenet_v2.nsfwjs';

const finetuneSchema = commonSchema.extend(dataSchema.shape).extend({
  backend: backendSchema.optional(),
  model: z.string().min(1),
  freeze: z.string().regex(/^(all|\d+|[\w./-]+)$/, 'expected a layer count, a layer name, or all'),
  epochs: z.coerce.number().int().min(1).max(10_000),
  batchSize: z.coerce.number().int().min(1).max(4096),
  lr: z.union([z.literal('auto'), z.coerce.number().positive().max(10)]),
  accumulate: z.coerce.number().int().min(1).max(1024),
  bn: z.enum(['frozen', 'train']),
  headHidden: z.coerce.number().int().min(1).optional(),
  dropout: z.coerce.number().min(0).max(0.95),
  augment: z.enum(['none', 'light', 'standard']),
  inputSize: z.coerce.number().int().min(32).max(1024).optional(),
  preprocess: z.enum(['caffe', 'tf', 'torch', 'raw01', 'none']).optional(),
  weights: z.enum(['pretrained', 'random']),
  out: z.string().optional(),
  featureCacheMb: z.coerce.number().int().min(0),
  workers: z.union([z.literal('auto'), z.coerce.number().int().min(1).max(64)]),
  monitor: z.enum(['val_loss', 'val_accuracy']),
  patience: z.coerce.number().int().min(1).optional(),
});

function defaultOutDir(model: string, data: string): string {
  const stamp = new Date().toISOString().replace(/[:T]/g, '-').replace(/\..+$/, '');
  const dataset = data.replace(/[/\\]+$/, '').split(/[/\\]/).pop() || 'data';
  return `models/${model.replace(/[^\w.-]/g, '_')}-${dataset}-${stamp}`;
}

export function finetuneCommand(io: Io): Command {
  const cmd = new Command('finetune')
    .description('fine-tune a pretrained model on DATA/<class>/<image> and write the model, metrics and report')
    .argument('<DATA>', 'dataset folder')
    .option('-m, --model <name|path|url>', 'registry model (see `tl models`), a run folder tl wrote, a tfjs model folder, or a model.json URL', DEFAULT_MODEL)
    .option('--freeze <n|layer|all>', "freeze layers 0..N-1 of the backbone (Keras indices), up to a named layer, or 'all' (head only)", 'all')
    .option('--epochs <n>', 'training epochs', '10')
    .option('--batch-size <n>', 'images per optimizer step', '16')
    .option('--lr <rate|auto>', 'Adam learning rate; auto: 0.001 for the head alone, 0.0001 when backbone layers train', 'auto')
    .option('--accumulate <k>', 'split each batch into k micro-batches and accumulate gradients (saves memory)', '1')
    .option('--bn <mode>', 'BatchNormalization layers in the trainable part: frozen (inference mode, the Keras advice) | train', 'frozen')
    .option('--head-hidden <units>', 'add a hidden dense layer to the head')
    .option('--dropout <rate>', 'dropout before the classifier', '0.2')
    .option('--augment <level>', 'training augmentation: none | light | standard (none lets the frozen part be cached)', 'none')
    .option('--input-size <px>', "input size (default: the model's)")
    .option('--preprocess <mode>', "caffe | tf | torch | raw01 | none (default: the model's)")
    .option('--weights <source>', 'pretrained | random', 'pretrained')
    .option('--workers <n|auto>', 'threads computing gradients (data-parallel replicas of the trainable part); auto: one per core on wasm and cpu, 1 on tensorflow', 'auto')
    .option('--monitor <metric>', 'val_loss | val_accuracy: picks the best epoch, whose weights are saved', 'val_loss')
    .option('--patience <epochs>', 'stop early after this many epochs without improvement of --monitor')
    .option('--feature-cache-mb <n>', 'memory for cached frozen-part outputs; beyond it they spill to disk', '2048')
    .option('-o, --out <dir>', 'run folder (default: models/<model>-<dataset>-<time>)');
  dataOptions(cmd);
  addCommonOptions(cmd, { backend: true });
  cmd.action(async (data: string, raw: unknown) => {
    const opts = parseOptions(finetuneSchema, raw);
    const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
    const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    announceBackend(io, backend.info, opts);
    const { finetune } = await import('../train/finetune.js');
    const out = opts.out ?? defaultOutDir(opts.model, data);
    const spinner = progress(io, 'preparing', opts);
    // First SIGINT/SIGTERM: finish the batch, write the run folder, exit 130/143. Second: exit at once (every file
    // already written is whole, being written by rename).
    const interrupt: { stop: 'SIGINT' | 'SIGTERM' | null } = { stop: null };
    const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
      if (interrupt.stop !== null) process.exit(signal === 'SIGINT' ? 130 : 143);
      interrupt.stop = signal;
      io.err(`\n${signal}: finishing the current batch and writing the run folder (${signal === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to quit at once)\n`);
    };
    const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
    if (io.errStream) {
      process.on('SIGINT', handlers.SIGINT);
      process.on('SIGTERM', handlers.SIGTERM);
    }
    let result: Awaited<ReturnType<typeof finetune>>;
    try {
      result = await finetune(backend.tf, backend.info, {
        interrupt,
        data,
        model: opts.model,
        out,
        freeze: opts.freeze,
        epochs: opts.epochs,
        batchSize: opts.batchSize,
        lr: opts.lr,
        accumulate: opts.accumulate,
        bn: opts.bn,
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
        workers: opts.workers === 'auto' ? (backend.info.name === 'tensorflow' ? 1 : availableParallelism()) : opts.workers,
        onDownload: downloadReporter(io, spinner, opts),
        onProgress: (e) => {
          if (e.phase === 'decode') return spinner.update(`decoding images ${e.done}/${e.total}`);
          if (e.phase === 'validate') return spinner.update(`epoch ${e.epoch}/${e.epochs} validating ${e.done}/${e.total}`);
          if (e.phase === 'epoch') {
            const r = e.row!;
            // Off a terminal there is no spinner: one line per finished epoch is the progress.
            if (!io.isTTY && !opts.quiet && !opts.json) io.err(`epoch ${r.epoch}/${e.epochs}: loss ${r.loss.toFixed(4)} acc ${r.accuracy.toFixed(3)} val_loss ${r.val_loss?.toFixed(4) ?? '-'} val_acc ${r.val_accuracy?.toFixed(3) ?? '-'} ${r.img_per_s.toFixed(1)} img/s ${r.seconds.toFixed(1)} s\n`);
            return;
          }
          spinner.update(`epoch ${e.epoch}/${e.epochs} ${e.done}/${e.total} loss ${e.loss?.toFixed(4)} acc ${e.accuracy?.toFixed(3)} ${e.imagesPerSecond?.toFixed(1)} img/s ETA ${Math.round(e.etaSeconds ?? 0)}s`);
        },
      });
    } finally {
      process.off('SIGINT', handlers.SIGINT);
      process.off('SIGTERM', handlers.SIGTERM);
    }
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
    if (result.test) io.out(`test: accuracy ${result.test.accuracy.toFixed(3)}, loss ${result.test.loss.toFixed(4)} on ${result.test.count} images\n`);
    io.out(`frozen ${result.frozenLayers}/${result.totalLayers} backbone layers, ${result.trainableParams} trainable parameters, feature cache ${result.cache.enabled ? `hit rate ${(result.cache.hitRate * 100).toFixed(0)}%` : 'off'}\n`);
    if (result.best) io.out(`saved the weights of epoch ${result.best.epoch} (best ${result.best.monitor} ${result.best.value.toFixed(4)})\n`);
    if (result.stopReason && !diverged && !stopped) io.out(`${result.stopReason}\n`);
    if (result.skipped.length) io.out(`skipped ${result.skipped.length} file(s); see ${out}/report.json\n`);
    io.out(`wrote ${out}\n`);
    if (diverged) throw new TlError('E_DIVERGED', `Training diverged: ${result.stopReason}.`, { suggestion: 'Lower --lr; the run folder holds the kept model and report.' });
    if (stopped) throw new InterruptedError(stopped, `${result.stopReason}; the model and a partial report are in ${out}.`);
  });
  return cmd;
}
