// The options of the commands that run models, each written once with its default and limits (flags and help come
// from these tables; src/options/shared.ts holds those several commands share).
import { z } from 'zod';
import { EVAL_SPLITS } from '../eval/index.js';
import { EXPORT_FORMATS, QUANTIZATIONS } from '../export/index.js';
import { FEATURE_FORMATS } from '../features/index.js';
import { numeric, option } from '../util/options.js';
import { ANY_MODEL, DEFAULT_MODEL, INPUT_SIZE, TOP } from './shared.js';

/** tl extract's own. */
export const EXTRACT_OPTIONS = {
  model: ANY_MODEL,
  layer: option('--layer <name>', "layer whose output to write (default: the pooled features, Keras's pooling='avg')", z.string().min(1).optional()),
  out: option('-o, --out <file>', 'output file (default: features.<format>); with npy the index goes to <name>.index.csv', z.string().min(1).optional()),
  format: option('--format <format>', 'file format', z.enum(FEATURE_FORMATS).default('npy')),
};

/** Test-time augmentation for the commands that classify (eval, predict). */
const TTA = option('--tta', 'test-time augmentation: average the probabilities of each image and of its mirror image (twice the compute)', z.boolean().default(false));
const TTA_ZOOM = option('--tta-zoom', "test-time augmentation: also average in the image's centre 87.5% resized back (with --tta, that crop's mirror too: four views)", z.boolean().default(false));

/** tl eval's own (besides the required --model). */
export const EVAL_OPTIONS = {
  tta: TTA,
  ttaZoom: TTA_ZOOM,
  split: option('--split <split>', "which of the run's saved splits", z.enum(EVAL_SPLITS).default('test')),
  out: option('-o, --out <dir>', 'report folder (default: <run>/eval-<split>); with --shard, the folder of the shards', z.string().min(1).optional()),
};

/** tl predict's own (besides the required --model). */
export const PREDICT_OPTIONS = {
  tta: TTA,
  ttaZoom: TTA_ZOOM,
  top: option('-k, --top <k>', 'classes to show per image', numeric(z.number().int().min(1).max(1000)).default(3)),
  out: option('-o, --out <file>', 'also write the predictions as JSON lines (one image per line, in input order); with --shard, the folder of the shards', z.string().min(1).optional()),
};

/** tl export's own (besides the required --out). */
export const EXPORT_OPTIONS = {
  format: option('--format <format>', 'what to write', z.enum(EXPORT_FORMATS).default('onnx')),
  quantize: option('--quantize <how>', "weights: none (float32); float16 (half the file, cast back to float32 when loaded; both formats); int8 (ONNX: integer convolutions calibrated on the run's training images, then checked against float32 on its test split); uint8 (TensorFlow.js: a quarter of weights.bin, an affine map per weight)", z.enum(QUANTIZATIONS).default('none')),
  calibration: option('--calibration <dir>', "with --quantize int8: a folder of images to calibrate on (default: the run's training split)", z.string().min(1).optional()),
  calibrationImages: option('--calibration-images <n>', 'with --quantize int8: how many images calibrate (a seeded sample)', numeric(z.number().int().min(1).max(100_000)).default(300)),
  top: TOP,
  demo: option('--demo', "also write index.html beside the model: a page that classifies a dropped or chosen image in the browser with the model's preprocessing, no network (serve the folder over HTTP)", z.boolean().default(false)),
};

/** tl data's own. */
export const DATA_CHECK_OPTIONS = {
  size: option('--size <px>', 'decode size used to validate images', numeric(z.number().int().min(8).max(1024)).default(224)),
  duplicates: option('--duplicates', 'also list near-duplicates: images that are one picture resized, re-encoded or cropped (crop-aware correlation of grayscale thumbnails), with their classes and splits; identical files are always listed', z.boolean().default(false)),
  suspects: option('--suspects', "also list the images whose label is probably wrong (confident learning on out-of-fold probabilities of linear probes on --model's pooled features)", z.boolean().default(false)),
  model: option('-m, --model <name|path>', 'with --suspects: the backbone whose features the probes train on', z.string().min(1).default(DEFAULT_MODEL)),
  inputSize: INPUT_SIZE,
  folds: option('--folds <k>', 'with --suspects: folds of the out-of-fold probabilities (each probe trains on the others)', numeric(z.number().int().min(2).max(20)).default(5)),
};

/** tl store prune's own. */
export const PRUNE_OPTIONS = {
  olderThan: option('--older-than <days>', 'ONNX graphs not used for this many days', numeric(z.number().min(0)).default(30)),
  onnx: option('--onnx', 'every cached ONNX graph (exported again when needed)', z.boolean().default(false)),
  weights: option('--weights', 'downloaded Keras and URL weights too (fetched again when needed: that needs the network)', z.boolean().default(false)),
  dryRun: option('--dry-run', 'say what would be removed, remove nothing', z.boolean().default(false)),
};

/** tl serve's own. */
export const SERVE_OPTIONS = {
  host: option('--host <address>', 'address to listen on (loopback unless you say otherwise: 0.0.0.0 opens it to the network)', z.string().min(1).default('127.0.0.1')),
  port: option('--port <n>', 'port to listen on (0: any free port, printed)', numeric(z.number().int().min(0).max(65535)).default(8080)),
  maxBatch: option('--max-batch <n>', 'most images run as one batch (requests that arrive together are batched)', numeric(z.number().int().min(1).max(1024)).default(16)),
  maxWaitMs: option('--max-wait-ms <ms>', 'longest a request waits for others to join its batch (none when no other request is on its way)', numeric(z.number().min(0).max(10_000)).default(5)),
  maxBodyMb: option('--max-body-mb <MB>', 'largest request body accepted (413 beyond)', numeric(z.number().positive().max(1024)).default(16)),
  top: PREDICT_OPTIONS.top,
  threads: option('--threads <n>', 'ONNX Runtime intra-op threads (default: every core)', numeric(z.number().int().min(1).max(1024)).optional()),
};
