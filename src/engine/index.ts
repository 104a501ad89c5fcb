// Inference engines: ONNX Runtime (native, multi-threaded) or TensorFlow.js, chosen with --engine.
import { createHash } from 'node:crypto';
import { utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LayersModel } from '../backend/index.js';
import { BackendError, UsageError } from '../errors.js';
import { exportOnnx } from '../onnx/export.js';
import { cudaUnusable, loadOrt, OnnxSession, ortThreads, resolvedDevice, setDevice, type Device } from '../onnx/runtime.js';
import { storeRoot } from '../store/index.js';
import { CHECK_WORDS, readStored, writeStored } from '../store/verified.js';
import { sweepStaleTemps } from '../util/atomic.js';
import { notice } from '../util/notice.js';

import type { EngineChoice, EngineName } from './names.js';

export type { EngineChoice, EngineName } from './names.js';

export interface EngineInfo {
  name: EngineName;
  /** e.g. `onnxruntime 1.30.0 (cpu, 2 threads)`. */
  label: string;
  /** Why `auto` did not pick ONNX Runtime, if it did not. */
  reason: string | null;
}

/**
 * Which engine runs: ONNX Runtime when it loads (auto), else TensorFlow.js; and the device ONNX Runtime uses for
 * every session of this process. An explicit --device cuda that cannot load fails here, before any work.
 */
export async function resolveEngine(choice: EngineChoice, device: Device = 'auto'): Promise<EngineInfo> {
  if (choice === 'tfjs' && device !== 'auto' && device !== 'cpu') throw new UsageError(`--device ${device} needs the onnx engine; --engine tfjs runs on the TensorFlow.js backend.`);
  if (device === 'cuda' && cudaUnusable() !== null) throw new BackendError(`--device cuda: ${cudaUnusable()!}.`, { suggestion: 'Use --device cpu, or install the CUDA provider.' });
  setDevice(device);
  if (choice === 'tfjs') return { name: 'tfjs', label: 'tfjs', reason: 'chosen with --engine tfjs' };
  const { ort, reason } = await loadOrt();
  if (!ort) {
    if (choice === 'onnx') throw new BackendError(`--engine onnx: ONNX Runtime does not load (${reason}).`, { suggestion: 'Reinstall with `npm install` (onnxruntime-node ships its CPU library), or use --engine tfjs.' });
    return { name: 'tfjs', label: 'tfjs', reason: `onnxruntime-node does not load: ${reason}` };
  }
  const on = resolvedDevice(device);
  return { name: 'onnx', label: `onnxruntime ${ort.env.versions.node ?? ort.env.versions.common} (${on === 'cpu' ? `cpu, ${ortThreads()} threads` : `${on}, falling back to cpu`})`, reason: null };
}

/** A content hash of a model: topology and every weight. */
export function modelHash(model: LayersModel): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(model.toJSON(null, false)));
  for (const w of model.weights) {
    const data = w.read().dataSync() as Float32Array;
    h.update(w.originalName);
    h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return h.digest('hex').slice(0, 24);
}

/**
 * `model` exported to ONNX: from the store's cache (by content hash) when the cached file matches its recorded
 * sha256, else exported again and cached (atomically, with its hash), saying why when a cached file was bad.
 */
export async function exportedGraph(model: LayersModel, store = storeRoot()): Promise<{ path: string; bytes: Uint8Array }> {
  const path = join(store, 'onnx', `${modelHash(model)}.onnx`);
  const cached = await readStored(path);
  if (cached.data !== null) {
    // The modification time records the last use, which `tl store prune` goes by (access times are often not kept).
    await utimes(path, new Date(), new Date()).catch(() => undefined);
    return { path, bytes: cached.data };
  }
  if (cached.check !== 'missing') notice(`the cached ONNX graph ${path} ${CHECK_WORDS[cached.check]}; exported it again`);
  for (const leftover of sweepStaleTemps(dirname(path))) notice(`removed ${leftover}, left by an interrupted run`);
  const bytes = exportOnnx(model);
  await writeStored(path, bytes);
  return { path, bytes };
}

/** An ONNX Runtime session over `model` (exported and cached first). */
export async function onnxSessionFor(model: LayersModel, options: { store?: string; threads?: number; spinning?: boolean } = {}): Promise<OnnxSession> {
  const { bytes } = await exportedGraph(model, options.store);
  return OnnxSession.open(bytes, { ...(options.threads ? { threads: options.threads } : {}), ...(options.spinning === false ? { spinning: false } : {}) });
}
