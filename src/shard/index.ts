// Sharding a pass over a dataset across the tasks of a scheduler's job array (Slurm, Kubernetes Indexed Jobs): which
// images a shard takes, which shard this process is, and the manifest each shard writes beside its outputs so that
// `tl merge` can check the shards belong together before joining them.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { LayerVariable, LayersModel } from '../backend/index.js';
import { UsageError } from '../errors.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { TL_VERSION } from '../version.js';

export interface Shard {
  index: number;
  count: number;
  /** Where I/N came from, in words (`--shard 2/4`, `SLURM_ARRAY_TASK_ID=5 (array 4-7)`, ...). */
  source: string;
}

/**
 * The shard of an image: a hash of its path relative to the dataset root, so that a file keeps its shard when other
 * files come and go (and every machine agrees, whatever its absolute paths).
 */
export function shardOf(rel: string, count: number): number {
  const h = createHash('sha256').update(rel).digest();
  return h.readUInt32BE(0) % count;
}

const int = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);

/**
 * This process's shard: `I/N` as given, or with `auto` from the scheduler's environment: Slurm's
 * SLURM_ARRAY_TASK_ID (with `shards`: shard TASK_ID of `shards`; without: TASK_ID - SLURM_ARRAY_TASK_MIN of the
 * array's size, from SLURM_ARRAY_TASK_MAX or SLURM_ARRAY_TASK_COUNT), or Kubernetes's JOB_COMPLETION_INDEX with
 * `shards` (an Indexed Job does not say its completions). Null when not sharded.
 */
export function resolveShard(spec: string | boolean | undefined, env: NodeJS.ProcessEnv, shards?: number): Shard | null {
  if (spec === undefined || spec === false) return null;
  if (typeof spec === 'string' && spec !== 'auto') {
    const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
    if (!m) throw new UsageError(`--shard ${spec}: expected I/N (shard I of N, counted from 0), or auto.`);
    const [index, count] = [Number(m[1]), Number(m[2])];
    if (count < 1 || index >= count) throw new UsageError(`--shard ${spec}: I must be below N (shards are numbered 0 to N-1).`);
    return { index, count, source: `--shard ${spec}` };
  }
  const task = int(env['SLURM_ARRAY_TASK_ID']);
  if (task !== null && shards !== undefined) {
    // With --shards N the task id is the shard (arrays numbered from 0, as `tl slurm` writes them), so that one task
    // re-run alone (sbatch --array=2) is still shard 2 of N.
    if (task >= shards) throw new UsageError(`--shard auto: SLURM_ARRAY_TASK_ID=${task} is not below --shards ${shards}.`);
    return { index: task, count: shards, source: `SLURM_ARRAY_TASK_ID=${task} (--shards ${shards})` };
  }
  if (task !== null) {
    const min = int(env['SLURM_ARRAY_TASK_MIN']) ?? 0;
    const max = int(env['SLURM_ARRAY_TASK_MAX']);
    const count = max !== null ? max - min + 1 : int(env['SLURM_ARRAY_TASK_COUNT']);
    if (count === null) throw new UsageError('--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_MAX nor SLURM_ARRAY_TASK_COUNT is; pass --shards N.');
    const index = task - min;
    if (index < 0 || index >= count) throw new UsageError(`--shard auto: SLURM_ARRAY_TASK_ID=${task} is outside the array's ${count} tasks from ${min}.`);
    return { index, count, source: `SLURM_ARRAY_TASK_ID=${task} (array ${min}-${min + count - 1})` };
  }
  const k8s = int(env['JOB_COMPLETION_INDEX']);
  if (k8s !== null) {
    if (shards === undefined) throw new UsageError('--shard auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job); pass --shards N, the job\'s completions.');
    if (k8s >= shards) throw new UsageError(`--shard auto: JOB_COMPLETION_INDEX=${k8s} is not below --shards ${shards}.`);
    return { index: k8s, count: shards, source: `JOB_COMPLETION_INDEX=${k8s} (--shards ${shards})` };
  }
  throw new UsageError('--shard auto: no SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX in the environment; pass --shard I/N.');
}

/** The folder of shard `index` of `count` inside a sharded run's output folder. */
export function shardFolderName(index: number, count: number): string {
  const w = String(count - 1).length;
  return `shard-${String(index).padStart(w, '0')}-of-${count}`;
}

/** sha256 over weights' names, shapes and values (a run's frozen layers, a shard's model). */
export function digestWeights(weights: readonly LayerVariable[]): string {
  const hash = createHash('sha256');
  for (const w of weights) {
    hash.update(`${w.originalName}[${w.shape.join(',')}]`);
    const data = w.read().dataSync() as Float32Array;
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return hash.digest('hex');
}

/** sha256 of a model's weights: which weights a shard ran, checked when merging. */
export function weightsDigest(model: LayersModel): string {
  return digestWeights(model.weights);
}

/** sha256 of the weights of a backbone's first `frozen` layers: what a frozen-part cache was computed with. */
export function frozenDigest(model: LayersModel, frozen: number): string {
  return digestWeights(model.layers.slice(0, frozen).flatMap((l) => l.weights));
}

/**
 * sha256 over the dataset's file list (paths relative to the root, in scan order): shards that saw different files
 * disagree. It reads no file (every shard computes it over the whole dataset); each shard's manifest records the size
 * and mtime of its own files.
 */
export async function datasetDigest(items: readonly { path: string; rel: string }[]): Promise<string> {
  const hash = createHash('sha256');
  for (const item of items) hash.update(`${item.rel}\n`);
  return hash.digest('hex');
}

export const MANIFEST = 'manifest.json';

/** What a shard writes last, beside its outputs (its presence marks the shard complete). */
export const manifestSchema = z.object({
  kind: z.literal('tl-shard'),
  version: z.literal(1),
  command: z.enum(['extract', 'cache', 'predict', 'eval']),
  tlVersion: z.string(),
  shard: z.object({ index: z.number().int().min(0), count: z.number().int().min(1) }),
  /** Everything that must agree between shards (model, weights, layer or freeze, preprocessing, split, dataset). */
  key: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  /** This shard's images that produced a row, in row order: path relative to the root, size, mtime, position in the whole dataset. */
  files: z.array(z.object({ rel: z.string(), size: z.number().int(), mtimeMs: z.number(), position: z.number().int().min(0) })),
  skipped: z.array(z.object({ path: z.string(), reason: z.string() })),
  /** Output files in the shard folder with their sha256 (checked before merging). */
  outputs: z.array(z.object({ name: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type Manifest = z.infer<typeof manifestSchema>;

/**
 * Makes this shard's folder inside `out` and removes a previous attempt's manifest first, so that a failed re-run is
 * never taken for a complete shard. Returns the folder.
 */
export async function openShardFolder(out: string, shard: Shard): Promise<string> {
  const folder = join(out, shardFolderName(shard.index, shard.count));
  await mkdir(folder, { recursive: true });
  await rm(join(folder, MANIFEST), { force: true });
  return folder;
}

/**
 * Writes the shard's manifest, last: its rows (each image's path relative to the root, size, mtime and position in
 * the whole pass), what it skipped, and the sha256 of each output file (named relative to the folder).
 */
export async function finishShard(
  folder: string,
  head: { command: Manifest['command']; shard: Shard; key: Manifest['key'] },
  rows: readonly { path: string; rel: string; position: number }[],
  skipped: readonly { path: string; reason: string }[],
  outputs: readonly string[],
): Promise<void> {
  const manifest: Manifest = {
    kind: 'tl-shard', version: 1, command: head.command, tlVersion: TL_VERSION, shard: { index: head.shard.index, count: head.shard.count }, key: head.key,
    files: await Promise.all(rows.map(async (r) => {
      const s = await stat(r.path);
      return { rel: r.rel, size: s.size, mtimeMs: Math.round(s.mtimeMs), position: r.position };
    })),
    skipped: skipped.map((s) => ({ path: s.path, reason: s.reason })),
    outputs: await Promise.all(outputs.map(async (name) => ({ name, sha256: createHash('sha256').update(await readFile(join(folder, name))).digest('hex') }))),
  };
  await writeJsonAtomic(join(folder, MANIFEST), manifest);
}
