// Options and start-up shared by the commands that run a model over images (extract, eval, predict).
import type { EngineName } from '../engine/names.js';
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { z } from 'zod';
import type { BackendChoice, BackendInfo, Tf } from '../backend/index.js';
import type { EngineInfo } from '../engine/index.js';
import { UsageError } from '../errors.js';
import type { Shard } from '../shard/index.js';
import { engineOptions, INFERENCE_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addCommonOptions, addOptions, announceBackend, backendSchema, commonSchema } from './common.js';

const ENGINE_OPTIONS = engineOptions('the forward passes');
import type { Io } from './io.js';

/** Adds --batch-size, --workers, --engine and the common options. */
export function addInferenceOptions(cmd: Command): Command {
  addOptions(cmd, { ...INFERENCE_OPTIONS, ...ENGINE_OPTIONS });
  return addCommonOptions(cmd, { backend: true });
}

export const inferenceSchema = commonSchema.extend({
  backend: backendSchema.optional(),
  ...schemaOf(ENGINE_OPTIONS).shape,
  ...schemaOf(INFERENCE_OPTIONS).shape,
});

/**
 * The shard of the images this process runs (`--shard`), said on stderr; every shardable command writes its shard into
 * a folder, so --out must name one.
 */
export async function shardFor(io: Io, opts: { shard?: string | boolean | undefined; shards?: number | undefined; out?: string | undefined; quiet: boolean; json: boolean }): Promise<Shard | null> {
  const { resolveShard } = await import('../shard/index.js');
  const shard = resolveShard(opts.shard === true ? 'auto' : opts.shard === false ? undefined : opts.shard, io.env, opts.shards);
  if (shard && opts.out === undefined) throw new UsageError('--shard needs --out FOLDER: each shard writes FOLDER/shard-I-of-N/.');
  if (shard && !opts.quiet && !opts.json) io.err(`shard ${shard.index}/${shard.count} (from ${shard.source})\n`);
  return shard;
}

/** Loads the backend and the engine, says which run, and returns the run options every such command takes. */
export async function startInference(io: Io, opts: z.infer<typeof inferenceSchema>): Promise<{ tf: Tf; info: BackendInfo; engine: EngineInfo; run: { batchSize: number; workers: number; backend: BackendChoice; engine: EngineName; store: string } }> {
  const { loadBackend, backendChoiceFromEnv } = await import('../backend/index.js');
  const { resolveEngine } = await import('../engine/index.js');
  const { storeRoot } = await import('../store/index.js');
  const backend = await loadBackend({ choice: opts.backend ?? backendChoiceFromEnv(io.env) });
  const engine = await resolveEngine(opts.engine, opts.device);
  announceBackend(io, backend.info, opts, engine);
  const workers = opts.workers === 'auto' ? (backend.info.name === 'tensorflow' ? 1 : availableParallelism()) : opts.workers;
  return { tf: backend.tf, info: backend.info, engine, run: { batchSize: opts.batchSize, workers, backend: backend.info.name, engine: engine.name, store: storeRoot(io.env) } };
}
