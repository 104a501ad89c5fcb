// ONNX Runtime (onnxruntime-node), loaded lazily as an optional native engine: sessions over tl's exported graphs.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { BackendError } from '../errors.js';
import { notice } from '../util/notice.js';

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
  // ONNX Runtime 1.30 keeps a telemetry device id under ~/.cache/Microsoft and can upload usage events: tl writes
  // nothing outside its store and sends nothing, unless the user set this variable themselves.
  process.env['ORT_DISABLE_TELEMETRY'] ??= '1';
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

/** Where ONNX Runtime runs: `auto` is CUDA when its provider and a driver load, else the CPU; WebGPU only when asked. */
export type Device = 'auto' | 'cpu' | 'cuda' | 'webgpu';
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda', 'webgpu'];

let preferred: Device = 'auto';

/** Sets the device every later session uses (the CLI's --device; one per process, like the compute backend). */
export function setDevice(device: Device): void {
  preferred = device;
}

/** How a user adds the CUDA provider to this installation. */
export const ADD_CUDA_HINT = 'add it with `tl doctor --add-cuda`: NVIDIA driver, CUDA 12 and cuDNN 9 needed; see the README';

/** Why the CUDA provider cannot be used, or null when it can. */
export function cudaUnusable(): string | null {
  const cuda = cudaProvider();
  if (cuda.library === null) return `onnxruntime-node's CUDA provider is not installed (${ADD_CUDA_HINT})`;
  if (!cuda.usable) return 'no NVIDIA driver is loaded (/proc/driver/nvidia/version is missing)';
  return null;
}

/** The device a session will be asked for, resolving `auto`. */
export function resolvedDevice(device: Device = preferred): 'cpu' | 'cuda' | 'webgpu' {
  if (device === 'auto') return cudaUnusable() === null ? 'cuda' : 'cpu';
  return device;
}

/** The first line of an ONNX Runtime error, without its source path. */
function shortReason(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
  // ORT prefixes its own source location and failed check ("... was false. Failed to get a WebGPU adapter: ...").
  const said = /was false\.\s*(.+)$/.exec(line)?.[1] ?? line.replace(/^\S*onnxruntime_src\S*\s*/, '');
  return said.trim().slice(0, 200);
}

const said = new Set<string>();
function noticeOnce(text: string): void {
  if (said.has(text)) return;
  said.add(text);
  notice(text);
}

/** Intra-op threads for a session: every core. */
export function ortThreads(): number {
  return availableParallelism();
}

/**
 * Why a session on `provider` alone cannot be created and run here, or null when it can. Probed in a child process:
 * Dawn writes its warnings (e.g. a missing Vulkan loader) straight to the process's stderr, and they are the better
 * reason; a CUDA provider whose libraries do not load cannot take the caller down with it.
 */
export async function probeProvider(provider: 'webgpu' | 'cuda'): Promise<string | null> {
  const { GraphBuilder, onnx, OPSET, FLOAT } = await import('./graph.js');
  const g = new GraphBuilder();
  g.node('Identity', ['x'], 'y', [], 'y');
  const value = (name: string) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 1 }] } } } });
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 7, opsetImport: [{ domain: '', version: OPSET }], graph: { name: 'probe', node: g.nodes, input: [value('x')], output: [value('y')] } })).finish();
  const script = `const ort = require(${JSON.stringify(createRequire(import.meta.url).resolve('onnxruntime-node'))});
ort.InferenceSession.create(Buffer.from(process.argv[1], 'base64'), { executionProviders: [process.argv[2]] })
  .then(async (s) => { await s.run({ x: new ort.Tensor('float32', new Float32Array([1]), [1]) }); await s.release(); })
  .then(() => console.log(JSON.stringify({ ok: true })), (e) => console.log(JSON.stringify({ ok: false, error: String(e && e.message) })));`;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['-e', script, Buffer.from(bytes).toString('base64'), provider], { encoding: 'utf8', timeout: 60_000 });
  let result: { ok: boolean; error?: string } | null = null;
  try {
    result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { ok: boolean; error?: string };
  } catch {
    result = null;
  }
  if (result?.ok) return null;
  const warning = /Warning: (.+)/.exec(r.stderr ?? '')?.[1]?.trim();
  const reason = result?.error ? shortReason(new Error(result.error)) : `the probe ended without an answer (${r.signal ?? `exit ${String(r.status)}`})`;
  return warning ? `${reason}; ${warning}` : reason;
}

let nchwcBlock: Promise<number> | null = null;

/**
 * The channel block of ONNX Runtime's NCHWc kernels on this CPU (16 with AVX-512, 8 with AVX2), or 0 where its CPU
 * provider has none: ReorderInput pads 4 channels up to one block.
 */
export function nchwcBlockSize(): Promise<number> {
  nchwcBlock ??= (async () => {
    const { ort } = await loadOrt();
    if (!ort) return 0;
    const { onnx, OPSET, FLOAT, A } = await import('./graph.js');
    const value = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
    const domain = 'com.microsoft.nchwc';
    const bytes = onnx.ModelProto.encode(onnx.ModelProto.create({
      irVersion: 7,
      opsetImport: [{ domain: '', version: OPSET }, { domain, version: 1 }],
      graph: { name: 'nchwc_probe', node: [{ opType: 'ReorderInput', domain, input: ['x'], output: ['y'], name: 'reorder', attribute: [A.int('channels_last', 1)] }], input: [value('x', [1, 1, 1, 4])], output: [{ name: 'y' }] },
    })).finish();
    try {
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4), [1, 1, 1, 4]) });
      await session.release();
      const block = out['y']!.dims[1]!;
      return block >= 4 && block % 4 === 0 ? block : 0;
    } catch {
      return 0;
    }
  })();
  return nchwcBlock;
}

/** What `tl doctor` reports about ONNX Runtime. */
export async function ortInfo(): Promise<OrtInfo> {
  const { ort, reason } = await loadOrt();
  if (!ort) return { available: false, version: null, providers: [], threads: 0, reason };
  const cuda = cudaUnusable() ?? (await probeProvider('cuda'));
  const webgpu = await probeProvider('webgpu');
  const providers = ['cpu: usable', cuda === null ? 'cuda: usable' : `cuda: not usable (${cuda})`, webgpu === null ? 'webgpu: usable (--device webgpu)' : `webgpu: not usable (${webgpu})`];
  return { available: true, version: ort.env.versions.node ?? ort.env.versions.common, providers, threads: ortThreads(), reason: null };
}

/** A session over one ONNX graph with NHWC float32 inputs. */
export class OnnxSession {
  private constructor(private readonly ort: Ort, private readonly session: import('onnxruntime-node').InferenceSession, private readonly runsOn: 'cpu' | 'cuda' | 'webgpu') {}

  /**
   * Opens `model` (bytes or a file path) with `threads` intra-op threads on `device` (default: the process's, see
   * setDevice); `memoryPattern: false` turns off ONNX Runtime's per-shape memory plan (see StepSession);
   * `spinning: false` parks the intra-op threads as soon as a run ends instead of letting them spin for the next one
   * (for sessions that take turns with another: their spinning threads would take the cores the other runs on). A
   * provider that fails at session creation falls back to the CPU with a notice; an explicit `cuda` whose provider or
   * driver is missing is an error saying which.
   */
  static async open(model: Uint8Array | string, options: { threads?: number; device?: Device; memoryPattern?: boolean; spinning?: boolean } = {}): Promise<OnnxSession> {
    const { ort, reason } = await loadOrt();
    if (!ort) throw new BackendError(`ONNX Runtime is not available: ${reason}`);
    const base = { intraOpNumThreads: options.threads ?? ortThreads(), interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, enableMemPattern: options.memoryPattern ?? true, ...(options.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}) };
    const create = (executionProviders: string[]) => (typeof model === 'string' ? ort.InferenceSession.create(model, { ...base, executionProviders }) : ort.InferenceSession.create(model, { ...base, executionProviders }));
    const requested = options.device ?? preferred;
    if (requested === 'cuda' && cudaUnusable() !== null) throw new BackendError(`--device cuda: ${cudaUnusable()!}.`, { suggestion: 'Use --device cpu, or install the CUDA provider.' });
    const device = resolvedDevice(requested);
    if (device !== 'cpu') {
      try {
        return new OnnxSession(ort, await create([device, 'cpu']), device);
      } catch (err) {
        noticeOnce(`the ${device === 'cuda' ? 'CUDA' : 'WebGPU'} execution provider failed (${shortReason(err)}); running on the CPU`);
      }
    }
    return new OnnxSession(ort, await create(['cpu']), 'cpu');
  }

  /** The device this session runs on. */
  get device(): 'cpu' | 'cuda' | 'webgpu' {
    return this.runsOn;
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
