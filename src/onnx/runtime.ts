// ONNX Runtime (onnxruntime-node), loaded lazily as an optional native engine: sessions over tl's exported graphs.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { BackendError } from '../errors.js';

type Ort = typeof import('onnxruntime-node');

export interface OrtInfo {
  available: boolean;
  version: string | null;
  /** Execution providers the installed package can use (cpu always; cuda when its binaries are installed). */
  providers: string[];
  threads: number;
  reason: string | null;
}

let cached: Promise<{ ort: Ort | null; reason: string | null }> | null = null;

/** onnxruntime-node, or null with the reason it does not load. */
export function loadOrt(): Promise<{ ort: Ort | null; reason: string | null }> {
  cached ??= import('onnxruntime-node').then(
    (m) => ({ ort: ((m as { default?: Ort }).default ?? m) as Ort, reason: null }),
    (err: unknown) => ({ ort: null, reason: err instanceof Error ? err.message.split('\n')[0]! : String(err) }),
  );
  return cached;
}

/**
 * Whether the CUDA execution provider can be tried: its library was installed (onnxruntime-node's CUDA 12 opt-in,
 * see the README) and an NVIDIA driver is loaded.
 */
export function cudaProvider(): { usable: boolean; library: string | null } {
  let library: string | null = null;
  try {
    const root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const candidate = join(root, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so');
    library = existsSync(candidate) ? candidate : null;
  } catch {
    library = null;
  }
  return { usable: library !== null && existsSync('/proc/driver/nvidia/version'), library };
}

/** Intra-op threads for a session: every core. */
export function ortThreads(): number {
  return availableParallelism();
}

/** What `tl doctor` reports about ONNX Runtime. */
export async function ortInfo(): Promise<OrtInfo> {
  const { ort, reason } = await loadOrt();
  if (!ort) return { available: false, version: null, providers: [], threads: 0, reason };
  const cuda = cudaProvider();
  const providers = ['cpu', cuda.usable ? 'cuda' : cuda.library ? 'cuda (installed; no NVIDIA driver)' : 'cuda (not installed: see the README for the CUDA 12 opt-in)'];
  return { available: true, version: ort.env.versions.node ?? ort.env.versions.common, providers, threads: ortThreads(), reason: null };
}

/** A session over one ONNX graph with NHWC float32 inputs. */
export class OnnxSession {
  private constructor(private readonly ort: Ort, private readonly session: import('onnxruntime-node').InferenceSession) {}

  /**
   * Opens `model` (bytes or a file path) with `threads` intra-op threads on the CPU, or on CUDA first when its
   * execution provider is usable (falling back to the CPU if the CUDA session cannot be created).
   */
  static async open(model: Uint8Array | string, options: { threads?: number; cuda?: boolean } = {}): Promise<OnnxSession> {
    const { ort, reason } = await loadOrt();
    if (!ort) throw new BackendError(`ONNX Runtime is not available: ${reason}`);
    const base = { intraOpNumThreads: options.threads ?? ortThreads(), interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
    const create = (executionProviders: string[]) => (typeof model === 'string' ? ort.InferenceSession.create(model, { ...base, executionProviders }) : ort.InferenceSession.create(model, { ...base, executionProviders }));
    if (options.cuda ?? cudaProvider().usable) {
      try {
        return new OnnxSession(ort, await create(['cuda', 'cpu']));
      } catch {
        // The CUDA libraries it links against (CUDA 12, cuDNN 9) are missing: the CPU serves.
      }
    }
    return new OnnxSession(ort, await create(['cpu']));
  }

  /** Runs one batch; returns every output's data in graph output order. */
  async run(inputs: { data: Float32Array; shape: number[] }[]): Promise<Float32Array[]> {
    const feeds = Object.fromEntries(this.session.inputNames.map((name, i) => [name, new this.ort.Tensor('float32', inputs[i]!.data, inputs[i]!.shape)]));
    const results = await this.session.run(feeds);
    return this.session.outputNames.map((name) => {
      const t = results[name]!;
      const data = t.data as Float32Array;
      t.dispose();
      return data;
    });
  }

  /** Runs with named feeds of any element type; returns the named outputs as ONNX Runtime tensors. */
  async runNamed(feeds: Record<string, import('onnxruntime-node').Tensor>): Promise<Record<string, import('onnxruntime-node').Tensor>> {
    return this.session.run(feeds);
  }

  /** Makes an ONNX Runtime tensor. */
  tensor(type: 'float32' | 'int64', data: Float32Array | BigInt64Array, shape: readonly number[]): import('onnxruntime-node').Tensor {
    return new this.ort.Tensor(type, data, shape);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
