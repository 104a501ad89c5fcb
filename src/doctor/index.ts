// Facts about this machine that decide how fast tl runs: backends, GPU libraries, wasm features, model store.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BackendAttempt, type BackendChoice, type BackendInfo, type ModuleImporter, loadBackend, probeBackends, tfjsVersions } from '../backend/index.js';
import { freeBytes, storeRoot } from '../store/index.js';
import { ortInfo, type OrtInfo } from '../onnx/runtime.js';
import { TL_VERSION } from '../version.js';

const run = promisify(execFile);

/** Whether tfjs-node-gpu could use a GPU here, and what is missing if not. */
export interface GpuReport {
  nvidiaDriver: string | null;
  libcudart: string | null;
  libcudnn: string | null;
  usable: boolean;
  reason: string;
}

export interface DoctorReport {
  tl: string;
  node: string;
  platform: string;
  tfjs: Record<string, string>;
  active: BackendInfo;
  backends: BackendAttempt[];
  gpu: GpuReport;
  wasm: { simd: boolean | null; threads: number | null; note: string };
  store: { path: string; exists: boolean; freeBytes: number | null };
  /** ONNX Runtime: the native inference engine (--engine auto picks it when it loads). */
  onnx: OrtInfo;
}

/** Libraries the tfjs-node-gpu 4.x build links against (CUDA 11.2, cuDNN 8.1). */
export const GPU_LIBRARIES = { cudart: 'libcudart.so.11.0', cudnn: 'libcudnn.so.8', cuda: 'libcuda.so.1' } as const;

async function ldconfigLibraries(): Promise<string> {
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      const { stdout } = await run(bin, ['-p'], { timeout: 5000, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch {
      // try the next location
    }
  }
  return '';
}

/** Finds a shared library by exact soname in the loader cache or the usual CUDA folders. */
export function findLibrary(soname: string, ldconfigOutput: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const line of ldconfigOutput.split('\n')) {
    const m = /^\s*(\S+)\s.*=>\s*(\S+)\s*$/.exec(line);
    if (m && m[1] === soname) return m[2] ?? null;
  }
  const dirs = [
    ...(env['LD_LIBRARY_PATH'] ?? '').split(':').filter(Boolean),
    '/usr/local/cuda/lib64',
    '/usr/local/cuda-11.2/lib64',
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib64',
  ];
  for (const dir of dirs) {
    const candidate = join(dir, soname);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

function nvidiaDriverVersion(): string | null {
  try {
    const text = readFileSync('/proc/driver/nvidia/version', 'utf8');
    return /Kernel Module\s+([\d.]+)/.exec(text)?.[1] ?? text.split('\n')[0]?.trim() ?? 'present';
  } catch {
    try {
      return readdirSync('/dev').some((d) => /^nvidia\d+$/.test(d)) ? 'present (version unknown)' : null;
    } catch {
      return null;
    }
  }
}

/** What a GPU run of tfjs-node-gpu would need, found or not. */
export async function gpuReport(env: NodeJS.ProcessEnv = process.env): Promise<GpuReport> {
  const ld = await ldconfigLibraries();
  const nvidiaDriver = nvidiaDriverVersion();
  const libcudart = findLibrary(GPU_LIBRARIES.cudart, ld, env);
  const libcudnn = findLibrary(GPU_LIBRARIES.cudnn, ld, env);
  const missing: string[] = [];
  if (nvidiaDriver === null) missing.push('no NVIDIA driver (/proc/driver/nvidia/version absent)');
  if (libcudart === null) missing.push(`${GPU_LIBRARIES.cudart} not found (CUDA 11.2 runtime)`);
  if (libcudnn === null) missing.push(`${GPU_LIBRARIES.cudnn} not found (cuDNN 8.1)`);
  const usable = missing.length === 0;
  return {
    nvidiaDriver,
    libcudart,
    libcudnn,
    usable,
    reason: usable ? 'NVIDIA driver, CUDA 11.2 runtime and cuDNN 8 found' : missing.join('; '),
  };
}

export interface DoctorOptions {
  choice?: BackendChoice;
  importModule?: ModuleImporter;
  env?: NodeJS.ProcessEnv;
}

/** Collects the doctor report; probes every backend, then leaves the chosen one active. */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  const backends = await probeBackends(options.importModule);
  const active = await loadBackend({ choice: options.choice ?? 'auto', ...(options.importModule ? { importModule: options.importModule } : {}) });
  const wasmLoaded = backends.some((b) => b.backend === 'wasm' && b.ok);
  let wasm: DoctorReport['wasm'] = { simd: null, threads: null, note: 'wasm backend did not load' };
  if (wasmLoaded) {
    const simd = (await active.tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
    wasm = {
      simd,
      threads: 1,
      note: 'tfjs-backend-wasm 4.22 turns its threaded build off under Node (IS_NODE), so each wasm instance runs on one thread; tl finetune uses the other cores through worker-thread replicas (--workers)',
    };
  }
  const root = storeRoot(env);
  return {
    tl: TL_VERSION,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    tfjs: tfjsVersions(),
    active: active.info,
    backends,
    gpu: await gpuReport(env),
    wasm,
    store: { path: root, exists: existsSync(root), freeBytes: (await freeBytes(root)) ?? null },
    onnx: await ortInfo(),
  };
}
