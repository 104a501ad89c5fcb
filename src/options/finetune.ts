// The options of `tl finetune` (and `tl lr-find`), each written once: its flag, help, type, limits, default and
// whether `--resume` may change it. The command line's flags and help, --config files, the run's config.json (written
// and read back with the same schema) and the core's option type all come from this table.
import { z } from 'zod';
import { BN_MODES } from '../model/index.js';
import { AUGMENT_LEVELS, parseAugmentLevel, type AugmentLevel } from '../data/modes.js';
import { ENGINES } from '../engine/names.js';
import { OPTIMIZERS, SCHEDULES } from '../step/optim.js';
import { numeric, numericOrAuto, option, schemaOf, type OptionSpec } from '../util/options.js';
import { DATA_OPTIONS, DEFAULT_MODEL, engineOptions, INPUT_SIZE, PREPROCESS, WEIGHTS } from './shared.js';

/** An augmentation level: a named one, or RandAugment as `rand-nN-mM`, kept in its one spelling. */
const augmentLevel = z.string().transform((text, ctx): AugmentLevel => {
  const level = parseAugmentLevel(text);
  if (level === null) ctx.addIssue({ code: 'custom', message: `expected ${AUGMENT_LEVELS.join(', ')} or rand-nN-mM (N operations 1-14, magnitude M 0-30)` });
  return level ?? 'none';
});

/** What a run trains and how: the settings a run saves in its config.json. */
export const TRAINING_OPTIONS = {
  model: option('-m, --model <name|path|url>', 'registry model (see `tl models`), a run folder tl wrote, a tfjs model folder, a Keras .h5 file (weights or full model) of a registry architecture, or a model.json URL', z.string().min(1).default(DEFAULT_MODEL)),
  arch: option('--arch <name>', 'with a Keras .h5 file as --model: the registry architecture it holds, when neither its file name nor its model config tells', z.string().min(1).optional()),
  freeze: option('--freeze <n|layer|all|auto|default>', "freeze layers 0..N-1 of the backbone (Keras indices), up to a named layer, 'all' (the head alone), 'auto' (chosen from the data; see `tl rank`) or 'default': the model's published fine-tuning point (mobilenet_v2 100, inception_v3 249, resnet conv5; see `tl models info`), else all", z.union([z.number().int().min(0), z.string().regex(/^(all|\d+|[\w./-]+)$/, 'expected a layer count, a layer name, all, auto or default')]).default('default')),
  epochs: option('--epochs <n|auto>', 'training epochs (of the second phase, with --head-epochs); auto: 3 when backbone layers train, 10 for the head alone', numericOrAuto(z.number().int().min(1).max(10_000)).default('auto'), { resumable: true }),
  headEpochs: option('--head-epochs <n>', 'first train the head alone (whole backbone frozen) for n epochs, then --epochs at --freeze and --finetune-lr', numeric(z.number().int().min(0).max(10_000)).default(0)),
  batchSize: option('--batch-size <n>', 'images per optimizer step', numeric(z.number().int().min(1).max(4096)).default(16)),
  lr: option('--lr <rate|auto|find>', 'learning rate; auto: 0.001 for the head alone (and the head phase), 0.0001 when backbone layers train; find: the suggestion of a learning-rate range test (see `tl lr-find`)', z.union([z.literal('find'), numericOrAuto(z.number().positive().max(10))]).default('auto')),
  minLr: option('--min-lr <rate>', 'range test (--lr find, tl lr-find): first rate', numeric(z.number().positive().max(10)).default(1e-7)),
  maxLr: option('--max-lr <rate>', 'range test: last rate', numeric(z.number().positive().max(10)).default(10)),
  lrFindSteps: option('--lr-find-steps <n>', 'range test: steps (the rate grows exponentially from --min-lr to --max-lr)', numeric(z.number().int().min(10).max(10_000)).default(100)),
  finetuneLr: option('--finetune-lr <rate>', 'learning rate of the second phase (default: --lr / 10)', numeric(z.number().positive().max(10)).optional()),
  optimizer: option('--optimizer <name>', 'the optimizer', z.enum(OPTIMIZERS).default('adam')),
  momentum: option('--momentum <m>', 'momentum of sgd (default 0.9) and rmsprop (default 0)', numeric(z.number().min(0).max(0.999)).optional()),
  nesterov: option('--nesterov', 'Nesterov momentum (sgd)', z.boolean().default(false)),
  schedule: option('--schedule <name>', "learning-rate schedule per phase: constant | cosine (decay to 0) | step | one-cycle (fastai's fit_one_cycle: from lr/25 up to lr over the first quarter, then down to lr/1e5; the momentum is not cycled)", z.enum(SCHEDULES).default('constant')),
  warmupEpochs: option('--warmup-epochs <n>', 'linear warmup at the start of each phase (fractions allowed)', numeric(z.number().min(0).max(10_000)).default(0)),
  stepEpochs: option('--step-epochs <n>', 'step schedule: decay every n epochs (default: a third of --epochs)', numeric(z.number().int().min(1).max(10_000)).optional()),
  gamma: option('--gamma <g>', 'step schedule: multiply the rate by g at each step', numeric(z.number().positive().max(1)).default(0.1)),
  lrDecayPerBlock: option('--lr-decay-per-block <d>', "discriminative rates: the head trains at --lr, the backbone's last block at lr x d, the block before at lr x d^2, and so on toward the input (timm's layer-wise decay; 0.7 is usual); 1 is off", numeric(z.number().positive().max(1)).default(1)),
  weightDecay: option('--weight-decay <wd>', 'decoupled weight decay on the trainable weights (AdamW with adam)', numeric(z.number().min(0).max(1)).default(0)),
  labelSmoothing: option('--label-smoothing <s>', 'targets become (1-s) one-hot + s/classes', numeric(z.number().min(0).max(0.99)).default(0)),
  classWeight: option('--class-weight <mode>', 'none | balanced (weigh each class by n / (classes x its images), for imbalanced folders)', z.enum(['none', 'balanced']).default('none')),
  accumulate: option('--accumulate <k>', 'split each batch into k micro-batches and accumulate gradients (saves memory)', numeric(z.number().int().min(1).max(1024)).default(1)),
  bn: option('--bn <mode>', 'BatchNormalization layers in the trainable part: frozen (inference mode, the Keras advice for pretrained weights) | train (batch statistics; moving statistics recomputed over training images before each validation) | auto (train with --weights random, else frozen)', z.enum([...BN_MODES, 'auto']).default('auto')),
  bnMomentum: option('--bn-momentum <m>', "momentum of BatchNormalization's moving averages (default: the architecture's, e.g. 0.999 for MobileNetV2)", numeric(z.number().min(0).max(0.9999)).optional()),
  newHead: option('--new-head', 'with a run as --model: train a new classifier head even when its classes match (by default a run continues with its own head)', z.boolean().default(false)),
  headHidden: option('--head-hidden <units>', 'add a hidden dense layer to the head', numeric(z.number().int().min(1).max(65_536)).optional()),
  dropout: option('--dropout <rate>', 'dropout before the classifier', numeric(z.number().min(0).max(0.95)).default(0.2)),
  augment: option('--augment <level>', "training augmentation: light (random resized crops, flips), standard (also small rotations, brightness, contrast), trivial (crops and flips, then TrivialAugment: one of 14 operations at a random strength, and random erasing), rand (crops and flips, then RandAugment: N of the same operations at magnitude M, and random erasing; rand-nN-mM sets them, rand is rand-n2-m9 as torchvision's, M of 0-30 where timm's m counts tenths); none lets the frozen part be cached", augmentLevel.default('none')),
  augmentViews: option('--augment-views <k>', "with --augment: draw k augmented views of every training image once, cache the frozen part's outputs of all of them, and show each image as one of its views per epoch (augmentation at the cost of cached training); 0 augments anew every epoch", numeric(z.number().int().min(0).max(64)).default(0)),
  mixup: option('--mixup <alpha>', "mixup: each batch blended with itself reversed at a ratio drawn from Beta(alpha, alpha), and the targets mixed alike (timm's 0.8 is a usual value); 0 is off. Like --augment, it runs the frozen part on every batch", numeric(z.number().min(0).max(10)).default(0)),
  cutmix: option('--cutmix <alpha>', "CutMix: a box of the reversed batch pasted in, its area drawn from Beta(alpha, alpha), the targets mixed by the area (timm's 1.0 is usual); with --mixup too, each batch takes one or the other; 0 is off", numeric(z.number().min(0).max(10)).default(0)),
  inputSize: INPUT_SIZE,
  preprocess: PREPROCESS,
  weights: WEIGHTS,
  ...DATA_OPTIONS,
  workers: option('--workers <n|auto>', 'threads computing gradients (data-parallel replicas of the trainable part); auto: one per core on wasm and cpu, 1 on tensorflow', numericOrAuto(z.number().int().min(1).max(64)).default('auto'), { resumable: true }),
  monitor: option('--monitor <metric>', 'picks the best epoch, whose weights are saved', z.enum(['val_loss', 'val_accuracy']).default('val_loss')),
  patience: option('--patience <epochs>', 'stop early after this many epochs (of the last phase) without improvement of --monitor', numeric(z.number().int().min(1).max(10_000)).optional(), { resumable: true }),
  calibrate: option('--calibrate <method>', 'temperature: after training, fit a temperature on the validation split and fold it into the classifier (predictions unchanged, probabilities calibrated) | none', z.enum(['temperature', 'none']).default('temperature')),
  cache: option('--cache <dir>', 'train the tail from a frozen-part cache (`tl cache`, or `tl merge` of its shards) instead of running the frozen part; it must match the model, weights, --freeze, input size, preprocessing, resize and images', z.string().min(1).optional()),
  cacheMb: option('--cache-mb <n>', 'memory for cached frozen-part outputs; beyond it they spill to disk', numeric(z.number().int().min(0)).default(2048), { resumable: true }),
} satisfies Record<string, OptionSpec>;

/** Every option of `tl finetune`: what the run trains, the engine it trains on, where it writes. */
export const FINETUNE_OPTIONS = {
  ...TRAINING_OPTIONS,
  ...engineOptions('the frozen part and the train step'),
  out: option('-o, --out <dir>', 'run folder (default: models/<model>-<dataset>-<time>)', z.string().min(1).optional()),
} satisfies Record<string, OptionSpec>;

/** The command line's options: every flag, validated as typed (numbers from strings). */
export const finetuneSchema = schemaOf(FINETUNE_OPTIONS);
export type FinetuneFlags = z.output<typeof finetuneSchema>;

/**
 * The core's settings (`finetune()`'s options but the run folder, the data and the callbacks): the training options
 * and the engine that runs them, resolved (`onnx` or `tfjs`).
 */
export const settingsSchema = schemaOf(TRAINING_OPTIONS).extend({ engine: z.enum(ENGINES).default('tfjs') });
export type Settings = z.output<typeof settingsSchema>;
export type SettingsInput = z.input<typeof settingsSchema>;

/** The keys `--resume` may change (the rest are fixed by the run's config.json). */
export const RESUMABLE = Object.entries(FINETUNE_OPTIONS).filter(([, spec]) => 'resumable' in spec && spec.resumable).map(([key]) => key);

/** Options renamed since runs were first saved, old name to new (config.json and --config files may use the old). */
export const RENAMED: Readonly<Record<string, string>> = { features: 'cache', featureCacheMb: 'cacheMb' };

/** A saved or given options object with renamed keys under their new names; a cache size in bytes (older runs) in MiB. */
export function currentKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) {
    if (key === 'featureCacheBytes') out.cacheMb ??= Math.floor(Number(value) / 2 ** 20);
    else out[RENAMED[key] ?? key] = value;
  }
  return out;
}

/**
 * A run's config.json read back as settings: the same schema, so a resumed run obeys the same limits as a new one.
 * Runs saved before an option was renamed give it under its old name.
 */
export const savedSettingsSchema = z.preprocess((v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? currentKeys(v as Record<string, unknown>) : v), settingsSchema.extend({ data: z.string().min(1), out: z.string().min(1) }));

/** tl curve's own (besides every option of tl finetune, which each run of the curve takes). */
export const CURVE_OPTIONS = {
  sizes: option('--sizes <list>', 'training images per class at each point of the curve, and all', z.string().regex(/^\s*(all|\d+)(\s*,\s*(all|\d+))*\s*$/, "expected numbers and 'all' separated by commas").default('5,10,20,50,all')),
  scratch: option('--scratch', 'also train from random weights with nothing frozen at each size (the curve without transfer; slow)', z.boolean().default(false)),
};
