// Options and start-up shared by the commands that run a model over images (extract, eval, predict).
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { z } from 'zod';
import type { BackendChoice, BackendInfo, Tf } from '../backend/index.js';
import type { EngineInfo } from '../engine/index.js';
import { engineOptions } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addCommonOptions, addOptions, announceBackend, backendSchema, commonSchema, numeric } from './common.js';

const ENGINE_OPTIONS = engineOptions('the forward passes');
import type { Io } from './io.js';

/** Adds --batch-size, --workers, --engine and the common options. */
export function addInferenceOptions(cmd: Command): Command {
  cmd.option('--batch-size <n>', 'images per forward pass', '32').option('--workers <n|auto>', 'threads running the model on the tfjs engine; auto: one per core on wasm and cpu', 'auto');
  addOptions(cmd, ENGINE_OPTIONS);
  return addCommonOptions(cmd, { backend: true });
}

export const inferenceSchema = commonSchema.extend({
  backend: backendSchema.optional(),
  ...schemaOf(ENGINE_OPTIONS).shape,
  batchSize: numeric(z.number().int().min(1).max(4096)),
  workers: z.union([z.literal('auto'), numeric(z.number().int().min(1).max(64))]),
});

/** Loads the backend and the engine, says which run, and returns the run options every such command takes. */
export async function startInference(io: Io, opts: z.infer<typeof inferenceSchema>): Promise<{ tf: Tf; info: BackendInfo; engine: EngineInfo; run: { batchSize: number; workers: number; backend: BackendChoice; engine: 'onnx' | 'tfjs'; store: string } }> {
  const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
  const { resolveEngine } = await import('../engine/index.js');
  const { storeRoot } = await import('../store/index.js');
  const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
  const engine = await resolveEngine(opts.engine, opts.device);
  announceBackend(io, backend.info, opts, engine);
  const workers = opts.workers === 'auto' ? (backend.info.name === 'tensorflow' ? 1 : availableParallelism()) : opts.workers;
  return { tf: backend.tf, info: backend.info, engine, run: { batchSize: opts.batchSize, workers, backend: backend.info.name, engine: engine.name, store: storeRoot(io.env) } };
}
