// Chooses and initialises the TensorFlow.js backend; the only module that imports TensorFlow.js packages.
import * as tf from '@tensorflow/tfjs';
import { BackendError, errorMessage, UsageError } from '../errors.js';
import { registerGradientFixes } from './kernels/gradients.js';
import { registerWasmTrainingKernels } from './kernels/wasm-training.js';

/** The TensorFlow.js namespace every other module receives from here. */
export type Tf = typeof tf;
export type { LayersModel, SymbolicTensor, Tensor, Tensor1D, Tensor2D, Tensor4D, Rank, NamedTensorMap } from '@tensorflow/tfjs';
export type Layer = tf.layers.Layer;
export type LayerVariable = tf.LayerVariable;

import { BACKEND_NAMES, type BackendChoice, type BackendName } from './names.js';

export { BACKEND_NAMES, type BackendChoice, type BackendName };

/** Packages that provide the native `tensorflow` backend, in the order tried. */
export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** One try at loading a backend: what was tried and why it did or did not load. */
export interface BackendAttempt {
  backend: BackendName;
  /** The package tried (the native backend has two candidates). */
  package: string;
  ok: boolean;
  /** Why it did not load: names the missing package or library. */
  reason?: string;
}

/** The active backend and how it was chosen. */
export interface BackendInfo {
  name: BackendName;
  package: string;
  /** e.g. `wasm (simd, 1 thread)`. */
  label: string;
  simd?: boolean;
  threads?: number;
  attempts: BackendAttempt[];
}

export interface Backend {
  tf: Tf;
  info: BackendInfo;
}

/** Imports a module by specifier; injectable so tests can simulate missing or broken packages. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

export interface LoadBackendOptions {
  choice?: BackendChoice;
  importModule?: ModuleImporter;
}

const defaultImporter: ModuleImporter = (specifier) => import(specifier);

/** Reads the backend choice from `TL_BACKEND` when no option was given. */
export function backendChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  const value = env['TL_BACKEND'];
  if (value === undefined || value === '') return 'auto';
  if (value === 'auto' || (BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new UsageError(`TL_BACKEND=${value} is not a backend. Expected one of: auto, ${BACKEND_NAMES.join(', ')}.`);
}

/** Explains a failed import of a native package in one line that names what is missing. */
export function explainNativeFailure(pkg: string, err: unknown): string {
  const code = (err as { code?: string } | null)?.code;
  const message = errorMessage(err).split('\n')[0] ?? '';
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(pkg)) {
    return pkg.endsWith('-gpu')
      ? `${pkg} is not installed (optional dependency; its install downloads libtensorflow, which failed or was skipped)`
      : `${pkg} is not installed (optional; \`npm install ${pkg}@4.22.0\` adds the CPU build of libtensorflow)`;
  }
  const lib = /(lib[\w.+-]+\.so(?:\.[\d.]+)?)/.exec(message)?.[1];
  if (lib !== undefined) return `${pkg} is installed but cannot load ${lib}: ${message}`;
  if (/tfjs_binding\.node|napi-v\d/.test(message)) {
    return `${pkg} is installed but its native binding is missing (the libtensorflow download at install time did not complete): ${message}`;
  }
  return `${pkg} failed to load: ${message}`;
}

async function tryNative(importModule: ModuleImporter, attempts: BackendAttempt[]): Promise<string | undefined> {
  for (const pkg of NATIVE_PACKAGES) {
    try {
      await importModule(pkg);
      if (tf.findBackendFactory('tensorflow') === null) {
        attempts.push({ backend: 'tensorflow', package: pkg, ok: false, reason: `${pkg} loaded but registered no 'tensorflow' backend` });
        continue;
      }
      if (!(await tf.setBackend('tensorflow'))) {
        attempts.push({ backend: 'tensorflow', package: pkg, ok: false, reason: `${pkg} loaded but its backend failed to initialise` });
        continue;
      }
      attempts.push({ backend: 'tensorflow', package: pkg, ok: true });
      return pkg;
    } catch (err) {
      attempts.push({ backend: 'tensorflow', package: pkg, ok: false, reason: explainNativeFailure(pkg, err) });
    }
  }
  return undefined;
}

async function tryWasm(importModule: ModuleImporter, attempts: BackendAttempt[]): Promise<boolean> {
  const pkg = '@tensorflow/tfjs-backend-wasm';
  try {
    await importModule(pkg);
    registerWasmTrainingKernels(tf);
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm module failed to initialise');
    attempts.push({ backend: 'wasm', package: pkg, ok: true });
    return true;
  } catch (err) {
    attempts.push({ backend: 'wasm', package: pkg, ok: false, reason: `${pkg}: ${errorMessage(err)}` });
    return false;
  }
}

async function tryCpu(attempts: BackendAttempt[]): Promise<boolean> {
  const ok = await tf.setBackend('cpu');
  attempts.push({ backend: 'cpu', package: '@tensorflow/tfjs-backend-cpu', ok, ...(ok ? {} : { reason: 'the cpu backend failed to initialise' }) });
  return ok;
}

async function describe(name: BackendName, pkg: string, attempts: BackendAttempt[]): Promise<BackendInfo> {
  if (name === 'wasm') {
    const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
    const threads = wasmThreadCount();
    const features = [simd ? 'simd' : 'no simd', `${threads} thread${threads === 1 ? '' : 's'}`];
    return { name, package: pkg, label: `wasm (${features.join(', ')})`, simd, threads, attempts };
  }
  if (name === 'tensorflow') {
    const flavour = pkg.endsWith('-gpu') ? 'libtensorflow GPU build' : 'libtensorflow CPU build';
    return { name, package: pkg, label: `tensorflow (${flavour}, ${pkg})`, attempts };
  }
  return { name, package: pkg, label: 'cpu (pure JavaScript, slow)', threads: 1, attempts };
}

function wasmThreadCount(): number {
  const module = (tf.backend() as unknown as { wasm?: { _get_threads_count?: () => number } }).wasm;
  const count = module?._get_threads_count?.();
  return typeof count === 'number' && count > 0 ? count : 1;
}

let active: Backend | undefined;
let activeChoice: BackendChoice | undefined;

/**
 * Loads the requested backend (`auto`: tensorflow, then wasm, then cpu) and makes it the active one.
 * Throws BackendError when an explicitly requested backend cannot load.
 */
export async function loadBackend(options: LoadBackendOptions = {}): Promise<Backend> {
  const choice = options.choice ?? backendChoiceFromEnv();
  const importModule = options.importModule ?? defaultImporter;
  if (active !== undefined && activeChoice === choice && options.importModule === undefined && tf.getBackend() === active.info.name) {
    return active;
  }
  // Quiets tfjs's console banners (e.g. the cpu backend's advice to install tfjs-node); tl reports the backend itself.
  tf.env().set('PROD', true);
  registerGradientFixes(tf);
  const attempts: BackendAttempt[] = [];
  let chosen: { name: BackendName; pkg: string } | undefined;

  if (choice === 'auto' || choice === 'tensorflow') {
    const pkg = await tryNative(importModule, attempts);
    if (pkg !== undefined) chosen = { name: 'tensorflow', pkg };
  }
  if (chosen === undefined && (choice === 'auto' || choice === 'wasm')) {
    if (await tryWasm(importModule, attempts)) chosen = { name: 'wasm', pkg: '@tensorflow/tfjs-backend-wasm' };
  }
  if (chosen === undefined && (choice === 'auto' || choice === 'cpu')) {
    if (await tryCpu(attempts)) chosen = { name: 'cpu', pkg: '@tensorflow/tfjs-backend-cpu' };
  }
  if (chosen === undefined) {
    const reasons = attempts.map((a) => a.reason).filter(Boolean).join('; ');
    throw new BackendError(`Backend '${choice}' cannot load: ${reasons}`, {
      suggestion: choice === 'tensorflow' ? 'Run `tl doctor` for details, or use --backend auto to fall back to wasm.' : 'Run `tl doctor` for details.',
    });
  }
  await tf.ready();
  const backend: Backend = { tf, info: await describe(chosen.name, chosen.pkg, attempts) };
  if (options.importModule === undefined) {
    active = backend;
    activeChoice = choice;
  }
  return backend;
}

/** Tries every backend without keeping any of them active; for `tl doctor`. */
export async function probeBackends(importModule: ModuleImporter = defaultImporter): Promise<BackendAttempt[]> {
  const previous = tf.getBackend();
  const attempts: BackendAttempt[] = [];
  tf.env().set('PROD', true);
  await tryNative(importModule, attempts);
  await tryWasm(importModule, attempts);
  await tryCpu(attempts);
  if (previous) await tf.setBackend(previous);
  return attempts;
}

/** Size of the wasm backend's heap in bytes (it only grows, so this is the peak so far); null on other backends. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  const module = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  return module?.HEAPU8?.buffer.byteLength ?? null;
}

/** Versions of the TensorFlow.js packages in use. */
export function tfjsVersions(): Record<string, string> {
  return { ...tf.version } as Record<string, string>;
}
