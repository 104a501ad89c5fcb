// Data-parallel training on one machine: worker threads hold replicas of the tail and compute gradients on
// slices of each batch while the main thread computes its own slice; the gradients are summed for one step.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BackendChoice, LayersModel } from '../backend/index.js';
import { BackendError } from '../errors.js';
import type { BnMode } from '../model/index.js';
import type { SliceSpec } from './gradients.js';
import type { ReplicaInit, ReplicaReply, ReplicaRequest } from './worker.js';

/** The compiled worker script (tests run from sources, so look in dist/ beside them too). */
function workerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'worker.js'), join(here, '..', '..', 'dist', 'src', 'replicas', 'worker.js')];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new BackendError(`Cannot find the training worker script (looked in ${candidates.join(', ')}); run \`npm run build\`.`);
  return found;
}

export interface Slice {
  inputs: { shape: number[]; data: Float32Array }[];
  labels: Int32Array;
  /** Soft targets of a mixed batch's slice, row-major [n, classes]. */
  targets?: Float32Array;
  spec: SliceSpec;
}

export interface SliceResult {
  grads: Map<string, Float32Array>;
  lossSum: number;
  correct: number;
}

class Replica {
  private readonly worker: Worker;
  private pending: { resolve: (r: ReplicaReply) => void; reject: (e: Error) => void } | null = null;

  constructor(backend: BackendChoice) {
    this.worker = new Worker(workerScript(), { workerData: { backend } satisfies ReplicaInit });
    this.worker.on('message', (reply: ReplicaReply) => {
      const p = this.pending;
      this.pending = null;
      if (reply.type === 'error') p?.reject(new BackendError(`Training worker failed: ${reply.message}`));
      else p?.resolve(reply);
    });
    this.worker.on('error', (err) => {
      this.pending?.reject(new BackendError(`Training worker crashed: ${err.message}`, { cause: err }));
      this.pending = null;
    });
  }

  request(msg: ReplicaRequest, transfer: ArrayBuffer[] = []): Promise<ReplicaReply> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(msg, transfer);
    });
  }

  async close(): Promise<void> {
    this.worker.postMessage({ type: 'close' } satisfies ReplicaRequest);
    await this.worker.terminate();
  }
}

/** Replicas of a tail model in worker threads. */
export class ReplicaPool {
  private constructor(private readonly replicas: Replica[]) {}

  /** Starts `count` workers on `backend`, each with a copy of `tail`'s topology. */
  static async start(tail: LayersModel, options: { count: number; backend: BackendChoice; bn: BnMode }): Promise<ReplicaPool> {
    const modelJson = tail.toJSON() as string;
    const pool = ReplicaPool.spawn(options.count, options.backend);
    try {
      await Promise.all(pool.replicas.map((r) => r.request({ type: 'load', modelJson, bn: options.bn })));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Starts `count` workers with nothing loaded (for inference only: see `loadFrozen`). */
  static spawn(count: number, backend: BackendChoice): ReplicaPool {
    return new ReplicaPool(Array.from({ length: count }, () => new Replica(backend)));
  }

  get size(): number {
    return this.replicas.length;
  }

  /** Sends each replica the current weights and its slice; resolves with their gradients by weight name. */
  async step(weights: { name: string; data: Float32Array }[], slices: Slice[]): Promise<SliceResult[]> {
    const replies = await Promise.all(
      slices.map((slice, i) =>
        this.replicas[i]!.request({ type: 'step', weights, inputs: slice.inputs, labels: slice.labels, ...(slice.targets ? { targets: slice.targets } : {}), spec: slice.spec }, slice.inputs.map((x) => x.data.buffer as ArrayBuffer)),
      ),
    );
    return replies.map((r) => {
      if (r.type !== 'step') throw new BackendError(`Training worker answered '${r.type}' to a step.`);
      return { grads: new Map(r.grads.map((g) => [g.name, g.data])), lossSum: r.lossSum, correct: r.correct };
    });
  }

  /** Gives every replica the frozen part (topology and weights), once. */
  async loadFrozen(frozen: LayersModel): Promise<void> {
    const modelJson = frozen.toJSON() as string;
    const weights = frozen.weights.map((w) => ({ name: w.originalName, data: w.read().dataSync() as Float32Array }));
    await Promise.all(this.replicas.map((r) => r.request({ type: 'load-frozen', modelJson, weights })));
  }

  /** Runs the frozen part on one input slice per replica; resolves with each slice's outputs. */
  async infer(inputs: { shape: number[]; data: Float32Array }[]): Promise<Float32Array[][]> {
    const replies = await Promise.all(inputs.map((input, i) => this.replicas[i]!.request({ type: 'infer', input }, [input.data.buffer as ArrayBuffer])));
    return replies.map((r) => {
      if (r.type !== 'infer') throw new BackendError(`Training worker answered '${r.type}' to an inference request.`);
      return r.outputs;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.close()));
  }
}
