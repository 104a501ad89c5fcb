// Trains a tail with TensorFlow.js autodiff: slices of each batch on worker replicas and on this thread, `accumulate`
// micro-batches each, their gradients summed for one step of a tfjs optimizer.
import type { LayersModel, Tensor, Tf } from '../backend/index.js';
import type { ReplicaPool, Slice, SliceResult } from '../replicas/pool.js';
import type { LossConfig } from '../model/loss.js';
import { sliceGradients } from '../replicas/gradients.js';
import { mixSeed } from '../util/random.js';
import { applyWeightDecay, createOptimizer, disposeOptimizer, setLearningRate, type Optimizer, type OptimizerConfig } from './optim.js';
import { slotKey, toArrays, toTensors, type NamedArray, type StepInput, type Trainer } from './index.js';

export interface TfjsTrainerOptions {
  optimizer: OptimizerConfig;
  lr: number;
  loss: LossConfig;
  weightDecay: number;
  accumulate: number;
  classes: number;
  /** Each tail input's shape without the batch dimension. */
  boundaryShapes: number[][];
  /** Worker replicas of the tail that compute gradients on slices of each batch (null: this thread only). */
  pool: ReplicaPool | null;
}

export class TfjsTrainer implements Trainer {
  readonly engine = 'tfjs' as const;
  private readonly optimizer: Optimizer;
  private readonly floats: number[];

  constructor(
    private readonly tf: Tf,
    private readonly tail: LayersModel,
    private readonly options: TfjsTrainerOptions,
  ) {
    this.optimizer = createOptimizer(tf, options.optimizer, options.lr);
    this.floats = options.boundaryShapes.map((s) => s.reduce((a, b) => a * b, 1));
  }

  async loadOptimizerState(state: NamedArray[] | null): Promise<void> {
    if (state === null || state.length === 0) return;
    const tensors = toTensors(this.tf, this.inOptimizerOrder(state));
    await this.optimizer.setWeights(tensors);
    this.tf.dispose(tensors.map((t) => t.tensor));
  }

  async step({ boundary, labels, targets, lr, dropoutSeed }: StepInput): Promise<{ loss: number; correct: number }> {
    const { tf, tail, options } = this;
    const pool = options.pool;
    setLearningRate(this.optimizer, lr);
    const n = labels.length;
    const parts = pool ? Math.min(n, pool.size + 1) : 1;
    const counts = Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
    const starts = counts.map((_, i) => counts.slice(0, i).reduce((a, b) => a + b, 0));
    const spec = (k: number) => ({ classes: options.classes, accumulate: options.accumulate, scale: counts[k]! / n, loss: options.loss, dropoutSeed: mixSeed(dropoutSeed, k) });
    let remote: Promise<SliceResult[]> = Promise.resolve([]);
    if (pool && parts > 1) {
      // Weights go out first so the replicas work while this thread computes its own slice.
      const weights = tail.weights.map((w) => ({ name: w.originalName, data: w.read().dataSync() as Float32Array }));
      const slices: Slice[] = counts.slice(1).map((count, k) => {
        const start = starts[k + 1]!;
        return {
          inputs: this.floats.map((floats, b) => ({ shape: [count, ...options.boundaryShapes[b]!], data: boundary[b]!.slice(start * floats, (start + count) * floats) })),
          labels: labels.slice(start, start + count),
          ...(targets ? { targets: targets.slice(start * options.classes, (start + count) * options.classes) } : {}),
          spec: spec(k + 1),
        };
      });
      remote = pool.step(weights, slices);
    }
    const localCount = counts[0]!;
    const inputs = options.boundaryShapes.map((shape, b) => tf.tensor(boundary[b]!.subarray(0, localCount * this.floats[b]!), [localCount, ...shape]));
    let local: Awaited<ReturnType<typeof sliceGradients>>;
    try {
      local = await sliceGradients(tf, tail, inputs, labels.subarray(0, localCount), spec(0), targets?.subarray(0, localCount * options.classes));
    } finally {
      tf.dispose(inputs);
    }
    const others = await remote;
    const trainable = tail.trainableWeights;
    const grads: Record<string, Tensor> = tf.tidy(() =>
      Object.fromEntries(
        trainable.map((w, i) => {
          let g = local.grads[i]!;
          for (const r of others) g = tf.add(g, tf.tensor(r.grads.get(w.originalName)!, w.shape as number[]));
          return [(w.read() as ReturnType<Tf['variable']>).name, g];
        }),
      ),
    );
    if (options.weightDecay > 0) applyWeightDecay(tf, trainable.map((w) => w.read()), lr, options.weightDecay);
    this.optimizer.applyGradients(grads as Record<string, ReturnType<Tf['variable']>>);
    tf.dispose([...local.grads, ...Object.values(grads)]);
    return { loss: (local.lossSum + others.reduce((a, r) => a + r.lossSum, 0)) / n, correct: local.correct + others.reduce((a, r) => a + r.correct, 0) };
  }

  weightsFinite(): boolean {
    const tf = this.tf;
    const ok = tf.tidy(() => tf.all(tf.stack(this.tail.trainableWeights.map((w) => tf.all(tf.isFinite(w.read()))))));
    const value = ok.dataSync()[0] === 1;
    ok.dispose();
    return value;
  }

  /** The variables are the weights: nothing to write back or reload. */
  syncWeights(): void {}

  reloadStates(): void {}

  async optimizerState(): Promise<NamedArray[]> {
    const saved = await this.optimizer.getWeights();
    const arrays = await toArrays(saved);
    // getWeights makes a fresh tensor for the iteration count; the slots are the optimizer's own.
    this.tf.dispose(saved.filter((o) => o.name === 'iter').map((o) => o.tensor));
    const own = new Map(this.tail.trainableWeights.map((w) => [(w.read() as ReturnType<Tf['variable']>).name, w.originalName]));
    return arrays.map((a) => {
      const cut = a.name.lastIndexOf('/');
      const variable = own.get(a.name.slice(0, cut));
      return variable === undefined ? a : { ...a, name: `${variable}${a.name.slice(cut)}` };
    });
  }

  /**
   * tfjs's optimizers restore slots by position (the order of the trainable weights, slot kind by slot kind), so a
   * checkpoint's slots are put in that order by name; a checkpoint that lacks one keeps its own order.
   */
  private inOptimizerOrder(state: NamedArray[]): NamedArray[] {
    const byKey = new Map(state.map((s) => [slotKey(s.name), s]));
    const suffixes = [...new Set(state.filter((s) => s.name !== 'iter').map((s) => s.name.slice(s.name.lastIndexOf('/'))))];
    const ordered = suffixes.flatMap((suffix) => this.tail.trainableWeights.map((w) => byKey.get(`${w.originalName}${suffix}`)));
    if (ordered.some((s) => s === undefined)) return state;
    return [...state.filter((s) => s.name === 'iter'), ...(ordered as NamedArray[])];
  }

  async close(): Promise<void> {
    disposeOptimizer(this.optimizer);
  }
}
