// Options several commands take, each written once: the dataset's split and decoding, the model's input, the engine.
import { z } from 'zod';
import type { LabelsSpec } from '../data/csv.js';
import type { MultiLabelSpec } from '../data/scan.js';
import { DEFAULT_MAX_PIXELS, DEFAULT_RESIZE, RESIZE_MODES } from '../data/modes.js';
import { ENGINES } from '../engine/names.js';
import { DEVICES } from '../onnx/runtime.js';
import { PREPROCESS_MODES } from '../registry/types.js';
import { numeric, numericOrAuto, option } from '../util/options.js';

/** The model a command uses when none is given. */
export const DEFAULT_MODEL = 'mobilenet_v2.nsfwjs';

/** Split fractions, seed, resize mode, pixel limit: every command that reads a labelled dataset. */
export const DATA_OPTIONS = {
  val: option('--val <fraction>', 'fraction of each class held out for validation', numeric(z.number().min(0).max(0.9)).default(0.15)),
  test: option('--test <fraction>', 'fraction of each class held out for testing', numeric(z.number().min(0).max(0.9)).default(0.15)),
  seed: option('--seed <n>', 'seed of the split, shuffling and augmentation', numeric(z.number().int()).default(42)),
  resize: option('--resize <mode>', 'how an image becomes the input size (tl extract and tl rank of a model tl trained: the mode it was trained with, unless given)', z.enum(RESIZE_MODES).default(DEFAULT_RESIZE)),
  maxPixels: option('--max-pixels <n>', 'skip images with more pixels than this (decompression bombs)', numeric(z.number().int().positive()).default(DEFAULT_MAX_PIXELS)),
  labels: option('--labels <file.csv>', "labels from a CSV file instead of class folders: a header row, a column of image paths relative to DATA and one of labels (an optional 'split' column keeps train, val or test as given); rows that cannot be used are listed as skipped", z.string().min(1).optional()),
  pathColumn: option('--path-column <name>', "with --labels: the column of image paths (default: the first named path, file, filename, image, image_id or id)", z.string().min(1).optional()),
  labelColumn: option('--label-column <name>', 'with --labels: the column of labels (default: the first named label, labels, class, category, target or tags)', z.string().min(1).optional()),
  multiLabel: option('--multi-label', 'several labels per image (a sigmoid classifier): a --labels cell lists them (or a path repeats on several rows), or an image sits under several class folders', z.boolean().default(false)),
  labelSep: option('--label-sep <text>', "with --multi-label: what separates labels in a --labels cell (default: ';' or '|', whichever the file uses)", z.string().min(1).optional()),
};

/** Multi-label reading, or undefined for one label per image. */
export function multiLabelOf(options: { multiLabel?: boolean | undefined; labelSep?: string | undefined }): MultiLabelSpec | undefined {
  if (!options.multiLabel) return undefined;
  return options.labelSep !== undefined ? { sep: options.labelSep } : {};
}

/** The CSV labels the data options name, or undefined for class folders. */
export function labelsOf(options: { labels?: string | undefined; pathColumn?: string | undefined; labelColumn?: string | undefined }): LabelsSpec | undefined {
  if (options.labels === undefined) return undefined;
  return { file: options.labels, ...(options.pathColumn ? { pathColumn: options.pathColumn } : {}), ...(options.labelColumn ? { labelColumn: options.labelColumn } : {}) };
}

/** The input size of a model (a registry model's own when not given). */
export const INPUT_SIZE = option('--input-size <px>', "input size (default: the model's)", numeric(z.number().int().min(32).max(1024)).optional());
/** The preprocessing of a model (a registry model's own when not given). */
export const PREPROCESS = option('--preprocess <mode>', "pixel scaling (default: the model's)", z.enum(PREPROCESS_MODES).optional());
/** A registry model's weights. */
export const WEIGHTS = option('--weights <source>', 'registry models: pretrained weights or random ones', z.enum(['pretrained', 'random']).default('pretrained'));

/** A registry model with the classifier it was published with (ImageNet's), or without it. */
export const TOP = option('--no-top', 'registry models: without the ImageNet top', z.boolean().default(true));

/** --engine and --device, for a command whose `what` runs on them. */
export function engineOptions(what: string) {
  return {
    engine: option('--engine <name>', `engine for ${what}: auto (ONNX Runtime when it loads) | onnx | tfjs`, z.enum(['auto', ...ENGINES]).default('auto'), { resumable: true }),
    device: option('--device <name>', 'where ONNX Runtime runs: auto (CUDA when its provider and a driver load, else cpu) | cpu | cuda | webgpu', z.enum(DEVICES as readonly ['auto', 'cpu', 'cuda', 'webgpu']).default('auto'), { resumable: true }),
  };
}

/** The model's input: size, preprocessing, weights (extract, cache). */
export const MODEL_INPUT_OPTIONS = { inputSize: INPUT_SIZE, preprocess: PREPROCESS, weights: WEIGHTS };

/** One shard of a job array's work (extract, cache, predict, eval). */
export const SHARD_OPTIONS = {
  shard: option('--shard [I/N|auto]', 'only shard I of N of the images (by a hash of each path relative to the dataset root); --out is then a folder and the shard writes <out>/shard-I-of-N/ with a manifest for `tl merge`; auto (or no value): from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX', z.union([z.string(), z.boolean()]).optional()),
  shards: option('--shards <n>', 'with --shard auto under a Kubernetes Indexed Job: the number of shards (its completions)', numeric(z.number().int().min(1).max(100_000)).optional()),
};

/** How a command that runs a model over images batches and threads it (extract, cache, predict, eval, rank). */
export const INFERENCE_OPTIONS = {
  batchSize: option('--batch-size <n>', 'images per forward pass', numeric(z.number().int().min(1).max(4096)).default(32)),
  workers: option('--workers <n|auto>', 'threads running the model on the tfjs engine; auto: one per core on wasm and cpu', numericOrAuto(z.number().int().min(1).max(64)).default('auto')),
};

/** `--model` of a command that takes any model and defaults to the bundled one (extract, cache). */
export const ANY_MODEL = option('-m, --model <name|path>', 'registry model, tl run folder, tfjs model folder or URL, or Keras .h5 file', z.string().min(1).default(DEFAULT_MODEL));
