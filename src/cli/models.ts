// `tl models` and `tl models info NAME`: the registry.
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { TOP } from '../options/shared.js';
import { addCommonOptions, addOptions, backendSchema, commonSchema, parseOptions, printJson } from './common.js';
import type { Io } from './io.js';

export function modelsCommand(io: Io): Command {
  const cmd = new Command('models').description('list the registry: name, family, parameters, layers, input, preprocessing, weights').enablePositionalOptions();
  addCommonOptions(cmd, { backend: false });
  cmd.action(async (raw: unknown) => {
    const opts = parseOptions(commonSchema, raw);
    const { listModels } = await import('../registry/describe.js');
    const { storeRoot } = await import('../store/index.js');
    const rows = listModels(storeRoot(io.env));
    if (opts.json) return printJson(io, rows);
    const table = new Table({ head: ['name', 'family', 'params', 'layers', 'input', 'preprocess', 'weights', 'offline'], style: { head: [], border: [] } });
    for (const r of rows) table.push([r.name, r.family, r.params.toLocaleString('en'), r.layers, r.inputSize, r.preprocess, r.weights, r.offline === 'no' ? 'no' : `yes (${r.offline})`]);
    io.out(`${table.toString()}\nParameters and layers are the backbone's (without the ImageNet top); layer indices are Keras's. Weights not yet offline download on first use, or \`tl models import FILE\` places a copy obtained elsewhere.\n`);
    for (const r of rows.filter((r) => r.name.includes('.'))) io.out(`${r.name}: ${r.trainedOn}\n`);
  });

  const info = new Command('info')
    .description("one model's layers (index, name, class, params, output shape) and weight sources")
    .argument('<NAME>', 'registry model name');
  addOptions(info, { top: TOP });
  addCommonOptions(info, { backend: true });
  info.action(async (name: string, raw: unknown) => {
    const opts = parseOptions(commonSchema.extend({ backend: backendSchema.optional(), top: TOP.schema }), raw);
    const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
    const { modelInfo } = await import('../registry/describe.js');
    const { storeRoot } = await import('../store/index.js');
    const { resolveVariant } = await import('../registry/index.js');
    resolveVariant(name);
    const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    const result = modelInfo(backend.tf, name, { includeTop: opts.top, store: storeRoot(io.env) });
    if (opts.json) return printJson(io, result);
    io.out(`${result.name} (${result.keras}, ${result.includeTop ? 'with' : 'without'} top): ${result.totalParams.toLocaleString('en')} parameters, ${result.layers.length} layers, input ${result.inputShape.join('x')}, preprocessing ${result.preprocess}\ntrained on: ${result.trainedOn}\n`);
    const table = new Table({ head: ['index', 'name', 'class', 'params', 'output shape'], style: { head: [], border: [] } });
    for (const l of result.layers) table.push([l.index, l.name, l.className, l.params, l.outputShape ? `(${l.outputShape.map((d) => d ?? 'None').join(', ')})` : '']);
    io.out(`${table.toString()}\n`);
    for (const w of result.weights) io.out(`weights: ${w.kind === 'nsfwjs' ? `nsfwjs ${w.model}` : w.url} ${w.inStore ? `(in store: ${w.storePath})` : '(not in store)'}\n`);
  });
  cmd.addCommand(info);

  const importCmd = new Command('import')
    .description("check a Keras weight file obtained elsewhere (published hash, HDF5, layer fit) and copy it into the model store")
    .argument('<FILE>', 'a Keras .h5 weight file, e.g. resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5')
    .option('-m, --model <name>', 'the registry model it is for (default: told by the file name Keras publishes it under)');
  addCommonOptions(importCmd, { backend: false });
  importCmd.action(async (file: string, raw: unknown) => {
    const opts = parseOptions(commonSchema.extend({ model: z.string().min(1).optional() }), raw);
    const { loadBackend } = await import('../backend/index.js');
    const { importWeights } = await import('../weights/import.js');
    const { storeRoot } = await import('../store/index.js');
    const backend = await loadBackend({ choice: 'cpu' });
    const result = await importWeights(backend.tf, file, { store: storeRoot(io.env), ...(opts.model ? { model: opts.model } : {}) });
    if (opts.json) return printJson(io, result);
    io.out(`imported ${file} as ${result.model}'s weights ${result.includeTop ? 'with' : 'without'} top (${result.verified} checked; every weight fits the model)\n  -> ${result.storedAt}\n`);
  });
  cmd.addCommand(importCmd);
  return cmd;
}
