// Inference engines: ONNX Runtime (native, multi-threaded) or TensorFlow.js, chosen with --engine.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayersModel } from '../backend/index.js';
import { BackendError } from '../errors.js';
import { exportOnnx } from '../onnx/export.js';
import { cudaProvider, loadOrt, OnnxSession, ortThreads } from '../onnx/runtime.js';
import { storeRoot } from '../store/index.js';
import { writeFileAtomic } from '../util/atomic.js';

export type EngineChoice = 'auto' | 'onnx' | 'tfjs';

export interface EngineInfo {
  name: 'onnx' | 'tfjs';
  /** e.g. `onnxruntime 1.30.0 (cpu, 2 threads)`. */
  label: string;
  /** Why `auto` did not pick ONNX Runtime, if it did not. */
  reason: string | null;
}

/** Which engine runs inference: ONNX Runtime when it loads (auto), else TensorFlow.js. */
export async function resolveEngine(choice: EngineChoice): Promise<EngineInfo> {
  if (choice === 'tfjs') return { name: 'tfjs', label: 'tfjs', reason: 'chosen with --engine tfjs' };
  const { ort, reason } = await loadOrt();
  if (!ort) {
    if (choice === 'onnx') throw new BackendError(`--engine onnx: ONNX Runtime does not load (${reason}).`, { suggestion: 'Reinstall with `npm install` (onnxruntime-node ships its CPU library), or use --engine tfjs.' });
    return { name: 'tfjs', label: 'tfjs', reason: `onnxruntime-node does not load: ${reason}` };
  }
  return { name: 'onnx', label: `onnxruntime ${ort.env.versions.node ?? ort.env.versions.common} (${cudaProvider().usable ? 'cuda, then ' : ''}cpu, ${ortThreads()} threads)`, reason: null };
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

/** `model` exported to ONNX, cached in the store by content hash (written once, atomically). */
export async function exportedPath(model: LayersModel, store = storeRoot()): Promise<string> {
  const path = join(store, 'onnx', `${modelHash(model)}.onnx`);
  if (!existsSync(path)) await writeFileAtomic(path, exportOnnx(model));
  return path;
}

/** An ONNX Runtime session over `model` (exported and cached first). */
export async function onnxSessionFor(model: LayersModel, options: { store?: string; threads?: number } = {}): Promise<OnnxSession> {
  const path = await exportedPath(model, options.store);
  return OnnxSession.open(await readFile(path), { ...(options.threads ? { threads: options.threads } : {}) });
}
