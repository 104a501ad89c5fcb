// `tl export RUN|NAME --format onnx|tfjs --out PATH`.
import { Command } from 'commander';
import { z } from 'zod';
import { addCommonOptions, addOptions, announceBackend, backendSchema, commonSchema, formatBytes, parseOptions, printJson } from './common.js';
import { EXPORT_OPTIONS } from '../options/commands.js';
import { INPUT_SIZE, WEIGHTS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { progress, type Io } from './io.js';

const exportSchema = commonSchema.extend({
  backend: backendSchema.optional(),
  ...schemaOf(EXPORT_OPTIONS).shape,
  out: z.string().min(1),
  weights: WEIGHTS.schema,
  inputSize: INPUT_SIZE.schema,
});

export function exportCommand(io: Io): Command {
  const cmd = new Command('export')
    .description('write a run or registry model as ONNX (opset 13, NHWC input, checked with ONNX Runtime) or a TensorFlow.js LayersModel')
    .argument('<MODEL>', 'run folder, tfjs model folder or URL, Keras .h5 file, or registry model name')
    .requiredOption('-o, --out <path>', 'output file (onnx) or folder (tfjs)');
  addOptions(cmd, { ...EXPORT_OPTIONS, weights: WEIGHTS, inputSize: INPUT_SIZE });
  addCommonOptions(cmd, { backend: true });
  cmd.action(async (model: string, raw: unknown) => {
    const opts = parseOptions(exportSchema, raw);
    const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
    const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    announceBackend(io, backend.info, opts);
    const { exportModel } = await import('../export/index.js');
    const spinner = progress(io, `exporting ${model}`, opts);
    const { storeRoot } = await import('../store/index.js');
    const result = await exportModel(backend.tf, { model, format: opts.format, out: opts.out, includeTop: opts.top, weights: opts.weights, ...(opts.inputSize ? { inputSize: opts.inputSize } : {}), store: storeRoot(io.env), quantize: opts.quantize, demo: opts.demo, calibrationImages: opts.calibrationImages, ...(opts.calibration ? { calibration: opts.calibration } : {}) });
    spinner.succeed(`exported ${model}`);
    if (opts.json) return printJson(io, result);
    io.out(`wrote ${result.out} (${opts.format}, ${formatBytes(result.bytes)}, ${result.layers} layers, input ${JSON.stringify(result.inputShape)}${result.float16 ? `, float16 weights (${result.float16.converted} tensors${result.float16.kept.length ? `; ${result.float16.kept.length} kept float32, beyond float16's range` : ''})` : ''}${result.int8 ? `, int8: ${result.int8.convolutions} convolutions, ${result.int8.activations} activations calibrated on ${result.int8.calibrationImages} images` : ''}${result.checked ? ', opened by ONNX Runtime' : ''})\n`);
    if (result.demo) io.out(`wrote ${result.demo}: serve its folder over HTTP (e.g. npx http-server) and open it in a browser\n`);
    const check = result.int8?.check;
    if (check) {
      const points = (check.float32.accuracy - check.int8.accuracy) * 100;
      io.out(`int8 against float32 on the run's ${check.images} test images: accuracy ${check.int8.accuracy.toFixed(3)} vs ${check.float32.accuracy.toFixed(3)}, log-loss ${check.int8.logLoss.toFixed(4)} vs ${check.float32.logLoss.toFixed(4)}, same top-1 for ${(check.agreement * 100).toFixed(1)}%\n`);
      if (points > 1) io.err(`warning: int8 loses ${points.toFixed(1)} points of test accuracy here; --quantize float16 keeps float32's answers at half the size\n`);
    } else if (result.int8) io.err(`note: no test split to check the int8 model against float32 (${result.int8.calibratedOn}); compare them with tl eval before you ship it\n`);
  });
  return cmd;
}
