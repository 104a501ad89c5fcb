// The run's plan, decided before anything trains: its phases (freeze, epochs, learning rate), BatchNorm mode,
// optimizer, loss and schedule, and the config.json that records them. Pure: it reads the options and a few facts of
// the model and data, and returns what the run does and what to tell the user.
import { mixing } from '../data/mix.js';
import { UsageError } from '../errors.js';
import type { BnMode, FreezeSpec } from '../model/index.js';
import { positiveWeights, targetRows, type LossConfig } from '../model/loss.js';
import { balancedClassWeights, type OptimizerConfig, type ScheduleConfig } from '../step/optim.js';
import type { FreezeAutoResult } from './freeze-auto.js';
import { effectiveConfig, type PhaseInfo, type RunOptions } from './types.js';

export interface RunPlan {
  phases: PhaseInfo[];
  /** Epochs of the last phase (`--epochs`, resolved), and of the whole run (with a head phase). */
  epochs: number;
  totalEpochs: number;
  bn: BnMode;
  optimizer: OptimizerConfig;
  loss: LossConfig;
  schedule: ScheduleConfig;
  stepsPerEpoch: number;
  /** config.json: the options with every `auto` and default resolved. */
  config: Record<string, unknown>;
  /** Said to the user as the run starts (notices), and those also kept in the report (warnings). */
  notices: string[];
  warnings: string[];
}

/** What the plan reads of the model and the data. */
export interface PlanFacts {
  /** `--freeze` once `default` and `auto` are resolved, and the leading layers it freezes of `layerCount`. */
  freeze: FreezeSpec;
  frozenCount: number;
  layerCount: number;
  trainLabels: number[];
  classes: number;
  /** Multi-label: the label sets the labels number; null for one label per image. */
  labelSets: number[][] | null;
  inputSize: number;
  backend: string;
  freezeAuto: FreezeAutoResult | null;
}

/** The `--freeze` a run uses: `auto`'s choice, `default`'s recipe (the registry's where it has one, else the head alone), or the value given. */
export function freezeSetting(options: Pick<RunOptions, 'freeze'>, fineTuneFrom: { layers: number } | undefined, freezeAuto: FreezeAutoResult | null): FreezeSpec {
  if (freezeAuto) return freezeAuto.chosen;
  return options.freeze === 'default' ? (fineTuneFrom?.layers ?? 'all') : options.freeze;
}

export function planRun(options: RunOptions, facts: PlanFacts): RunPlan {
  const { headEpochs } = options;
  const { frozenCount, layerCount } = facts;
  const notices: string[] = [];
  const warnings: string[] = [];
  // --epochs auto: 3 when backbone layers train, 10 for the head alone or with --augment (augmentation at 3 epochs lost
  // 3-15 points on two Fashion-MNIST sets and gained them back by 10; BENCHMARKS.md, "Augmentation").
  const mixed = mixing(options);
  const augmented = options.augment !== 'none' || mixed;
  const epochs = options.epochs === 'auto' ? (frozenCount < layerCount && !augmented ? 3 : 10) : options.epochs;
  const asked = [...(options.augment !== 'none' ? [`--augment ${options.augment}`] : []), ...(options.mixup > 0 ? [`--mixup ${options.mixup}`] : []), ...(options.cutmix > 0 ? [`--cutmix ${options.cutmix}`] : [])].join(' and ');
  if (options.epochs === 'auto' && augmented && frozenCount < layerCount && !options.resume && !options.trial) {
    notices.push(`--epochs auto is ${epochs} with ${asked} (3 without): augmentation shows each image differently every epoch and needs more of them to pay off`);
  }
  if (options.augmentViews > 0 && options.augment === 'none') throw new UsageError(`--augment-views ${options.augmentViews} draws views with --augment; give a level (light, standard, trivial or rand).`);
  if (options.augmentViews > 0 && mixed) throw new UsageError('--augment-views caches the outputs of each view; --mixup and --cutmix mix the pixels of every batch anew.');
  if (mixed && options.multiLabel) throw new UsageError('--mixup and --cutmix mix one label per image; they do not take --multi-label yet.');
  if (mixed && options.classWeight === 'balanced') throw new UsageError('--class-weight balanced weighs each image by its class; a mixed image has two (leave out --class-weight, or --mixup and --cutmix).');
  const totalEpochs = headEpochs + epochs;
  if (headEpochs > 0 && frozenCount >= layerCount) {
    throw new UsageError(`--head-epochs ${headEpochs} needs --freeze below the whole backbone (${layerCount} layers): the second phase would train the head only too.`);
  }
  const bn: BnMode = options.bn === 'auto' ? (options.weights === 'random' ? 'train' : 'frozen') : options.bn;
  if (options.bn === 'auto' && bn === 'train' && !options.resume && frozenCount < layerCount) notices.push('--bn train: the weights are random, so the BatchNormalization layers that train learn their statistics and scale/shift (recomputed over training images before each validation)');

  // With `find`, the auto rate stands in until the range test has run (or, on a resume, is read from its record).
  const lr = options.lr === 'auto' || options.lr === 'find' ? (frozenCount >= layerCount || headEpochs > 0 ? 1e-3 : 1e-4) : options.lr;
  const phases: PhaseInfo[] =
    headEpochs > 0
      ? [
          { name: 'head', first: 1, last: headEpochs, frozenLayers: layerCount, lr },
          { name: 'finetune', first: headEpochs + 1, last: totalEpochs, frozenLayers: frozenCount, lr: options.finetuneLr ?? lr / 10 },
        ]
      : [{ name: 'train', first: 1, last: totalEpochs, frozenLayers: frozenCount, lr }];
  const optimizer: OptimizerConfig = { optimizer: options.optimizer, momentum: options.momentum ?? (options.optimizer === 'sgd' ? 0.9 : 0), nesterov: options.nesterov };
  const balanced = options.classWeight === 'balanced';
  const sets = facts.labelSets;
  const loss: LossConfig = {
    labelSmoothing: options.labelSmoothing,
    classWeights: balanced && !sets ? balancedClassWeights(facts.trainLabels, facts.classes) : null,
    softTargets: mixed,
    multiLabel: sets ? { targets: targetRows(sets, facts.classes), posWeights: balanced ? positiveWeights(facts.trainLabels, sets, facts.classes) : null } : null,
  };
  const stepsPerEpoch = Math.ceil(facts.trainLabels.length / options.batchSize);
  const schedule: ScheduleConfig = {
    schedule: options.schedule,
    warmupSteps: Math.round(options.warmupEpochs * stepsPerEpoch),
    stepSteps: (options.stepEpochs ?? Math.max(1, Math.round(epochs / 3))) * stepsPerEpoch,
    gamma: options.gamma,
  };
  const config: Record<string, unknown> = {
    ...effectiveConfig(options),
    freeze: options.freeze === 'default' || options.freeze === 'auto' ? facts.freeze : options.freeze,
    ...(facts.freezeAuto ? { freezeAuto: facts.freezeAuto } : {}),
    epochs, lr: options.lr === 'find' ? 'find' : lr, phases,
    optimizer: optimizer.optimizer, momentum: optimizer.momentum, nesterov: optimizer.nesterov,
    inputSize: facts.inputSize, classWeights: loss.classWeights, ...(loss.multiLabel ? { posWeights: loss.multiLabel.posWeights } : {}), backend: facts.backend, frozenLayers: frozenCount, bn,
  };
  return { phases, epochs, totalEpochs, bn, optimizer, loss, schedule, stepsPerEpoch, config, notices, warnings };
}
