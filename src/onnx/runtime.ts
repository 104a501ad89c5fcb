// ONNX Runtime (onnxruntime-node), loaded lazily as an optional native engine: sessions over tl's exported graphs.
import { availableParallelism } from 'node:os';
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

/** Intra-op threads for a session: every core. */
export function ortThreads(): number {
  return availableParallelism();
}

/** What `tl doctor` reports about ONNX Runtime. */
export async function ortInfo(): Promise<OrtInfo> {
  const { ort, reason } = await loadOrt();
  if (!ort) return { available: false, version: null, providers: [], threads: 0, reason };
  const providers = ort.listSupportedBackends().filter((b) => b.bundled || b.name === 'cuda').map((b) => (b.bundled ? b.name : `${b.name} (not installed)`));
  return { available: true, version: ort.env.versions.node ?? ort.env.versions.common, providers, threads: ortThreads(), reason: null };
}

/** A session over one ONNX graph with NHWC float32 inputs. */
export class OnnxSession {
  private constructor(private readonly ort: Ort, private readonly session: import('onnxruntime-node').InferenceSession) {}

  /** Opens `model` (bytes or a file path) with `threads` intra-op threads on the CPU (and CUDA when asked and present). */
  static async open(model: Uint8Array | string, options: { threads?: number; cuda?: boolean } = {}): Promise<OnnxSession> {
    const { ort, reason } = await loadOrt();
    if (!ort) throw new BackendError(`ONNX Runtime is not available: ${reason}`);
    const providers = options.cuda ? ['cuda', 'cpu'] : ['cpu'];
    const opts = { executionProviders: providers, intraOpNumThreads: options.threads ?? ortThreads(), interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
    return new OnnxSession(ort, session);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
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

  async close(): Promise<void> {
    await this.session.release();
  }
}
