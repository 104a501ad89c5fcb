// A training replica in a worker thread: a copy of the tail that computes gradients on its slice of each batch.
import { parentPort, workerData } from 'node:worker_threads';
import type { LayersModel, Tf } from '../backend/index.js';
import { loadBackend, type BackendChoice } from '../backend/index.js';
import { customLayers } from '../registry/layers.js';
import { applyTrainability, type BnMode } from '../model/index.js';
import { sliceGradients, type SliceSpec } from './gradients.js';

export interface ReplicaInit {
  backend: BackendChoice;
}

export type ReplicaRequest =
  | { type: 'load'; modelJson: string; bn: BnMode }
  | { type: 'load-frozen'; modelJson: string; weights: { name: string; data: Float32Array }[] }
  | { type: 'infer'; input: { shape: number[]; data: Float32Array } }
  | { type: 'step'; weights: { name: string; data: Float32Array }[]; inputs: { shape: number[]; data: Float32Array }[]; labels: Int32Array; targets?: Float32Array; spec: SliceSpec }
  | { type: 'close' };

export type ReplicaReply =
  | { type: 'loaded' }
  | { type: 'infer'; outputs: Float32Array[] }
  | { type: 'step'; grads: { name: string; data: Float32Array }[]; lossSum: number; correct: number }
  | { type: 'error'; message: string };

const port = parentPort;
if (port === null) throw new Error('worker.ts runs only as a worker thread');

let tf: Tf;
let tail: LayersModel | null = null;
let frozen: LayersModel | null = null;
const ready = loadBackend({ choice: (workerData as ReplicaInit).backend }).then((b) => {
  tf = b.tf;
  // The tail may hold tl's own layers (MobileNetV3's TFOpLambda, keepdims pooling).
  customLayers(tf);
});

async function handle(msg: ReplicaRequest): Promise<ReplicaReply | null> {
  await ready;
  if (msg.type === 'close') {
    tail?.dispose();
    frozen?.dispose();
    port!.close();
    return null;
  }
  if (msg.type === 'load') {
    tail = await tf.models.modelFromJSON({ modelTopology: JSON.parse(msg.modelJson) as never });
    applyTrainability(tail, new Set(), msg.bn);
    return { type: 'loaded' };
  }
  if (msg.type === 'load-frozen') {
    frozen = await tf.models.modelFromJSON({ modelTopology: JSON.parse(msg.modelJson) as never });
    setWeightsByName(frozen, msg.weights);
    return { type: 'loaded' };
  }
  if (msg.type === 'infer') {
    const model = frozen!;
    const outputs = tf.tidy(() => {
      const y = model.predict(tf.tensor(msg.input.data, msg.input.shape), { batchSize: msg.input.shape[0] });
      return Array.isArray(y) ? y : [y];
    });
    const data = await Promise.all(outputs.map((o) => o.data() as Promise<Float32Array>));
    tf.dispose(outputs);
    return { type: 'infer', outputs: data };
  }
  const model = tail!;
  setWeightsByName(model, msg.weights);
  const inputs = msg.inputs.map((i) => tf.tensor(i.data, i.shape));
  try {
    const result = await sliceGradients(tf, model, inputs, msg.labels, msg.spec, msg.targets);
    const grads = await Promise.all(result.grads.map(async (g, i) => ({ name: model.trainableWeights[i]!.originalName, data: (await g.data()) as Float32Array })));
    tf.dispose(result.grads);
    return { type: 'step', grads, lossSum: result.lossSum, correct: result.correct };
  } finally {
    tf.dispose(inputs);
  }
}

function setWeightsByName(model: LayersModel, weights: { name: string; data: Float32Array }[]): void {
  const byName = new Map(weights.map((w) => [w.name, w.data]));
  const values = model.weights.map((w) => tf.tensor(byName.get(w.originalName)!, w.shape as number[]));
  model.setWeights(values);
  tf.dispose(values);
}

// Requests are handled strictly in order.
let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: ReplicaRequest) => {
  queue = queue.then(async () => {
    try {
      const reply = await handle(msg);
      if (reply) port.postMessage(reply, reply.type === 'step' ? reply.grads.map((g) => g.data.buffer as ArrayBuffer) : reply.type === 'infer' ? reply.outputs.map((o) => o.buffer as ArrayBuffer) : []);
    } catch (err) {
      port.postMessage({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies ReplicaReply);
    }
  });
});
