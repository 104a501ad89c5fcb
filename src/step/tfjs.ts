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
  /** Discriminative rates: each weight's multiple of the rate, by its name (`originalName`); absent: 1. */
  lrScales?: Record<string, number> | null;
}

/** The weights that train at one multiple of the rate, and the optimizer (at that rate) that updates them. */
interface RateGroup {
  scale: number;
  /** The weights' own names (`originalName`), in the tail's order. */
  weights: string[];
  optimizer: Optimizer;
}

export class TfjsTrainer implements Trainer {
  readonly engine = 'tfjs' as const;
  /** One optimizer per multiple of the rate (one in all without discriminative rates), as PyTorch's param groups. */
  private readonly groups: RateGroup[];
  private readonly floats: number[];

  constructor(
    private readonly tf: Tf,
    private readonly tail: LayersModel,
    private readonly options: TfjsTrainerOptions,
  ) {
    const byScale = new Map<number, string[]>();
    for (const w of tail.trainableWeights) {
      const scale = options.lrScales?.[w.originalName] ?? 1;
      byScale.set(scale, [...(byScale.get(scale) ?? []), w.originalName]);
    }
    this.groups = [...byScale].map(([scale, weights]) => ({ scale, weights, optimizer: createOptimizer(tf, options.optimizer, options.lr * scale) }));
    this.floats = options.boundaryShapes.map((s) => s.reduce((a, b) => a * b, 1));
  }

  async loadOptimizerState(state: NamedArray[] | null): Promise<void> {
    if (state === null || state.length === 0) return;
    for (const group of this.groups) {
      const mine = new Set(group.weights);
      const own = state.filter((s) => s.name === 'iter' || mine.has(slotKey(s.name).slice(0, slotKey(s.name).lastIndexOf('/'))));
      const tensors = toTensors(this.tf, this.inOptimizerOrder(own, group.weights));
      await group.optimizer.setWeights(tensors);
      this.tf.dispose(tensors.map((t) => t.tensor));
    }
  }

  async step({ boundary, labels, targets, lr, dropoutSeed }: StepInput): Promise<{ loss: number; correct: number }> {
    const { tf, tail, options } = this;
    const pool = options.pool;
    for (const group of this.groups) setLearningRate(group.optimizer, lr * group.scale);
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
    for (const group of this.groups) {
      const mine = trainable.filter((w) => group.weights.includes(w.originalName));
      if (options.weightDecay > 0) applyWeightDecay(tf, mine.map((w) => w.read()), lr * group.scale, options.weightDecay);
      const names = mine.map((w) => (w.read() as ReturnType<Tf['variable']>).name);
      group.optimizer.applyGradients(Object.fromEntries(names.map((name) => [name, grads[name]!])) as Record<string, ReturnType<Tf['variable']>>);
    }
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
    const arrays: NamedArray[] = [];
    for (const [g, group] of this.groups.entries()) {
      const saved = await group.optimizer.getWeights();
      // Every group counts the same steps: one iteration count is kept.
      arrays.push(...(await toArrays(saved)).filter((a) => g === 0 || a.name !== 'iter'));
      // getWeights makes a fresh tensor for the iteration count; the slots are the optimizer's own.
      this.tf.dispose(saved.filter((o) => o.name === 'iter').map((o) => o.tensor));
    }
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
  private inOptimizerOrder(state: NamedArray[], weights: string[]): NamedArray[] {
    const byKey = new Map(state.map((s) => [slotKey(s.name), s]));
    const suffixes = [...new Set(state.filter((s) => s.name !== 'iter').map((s) => s.name.slice(s.name.lastIndexOf('/'))))];
    const ordered = suffixes.flatMap((suffix) => weights.map((w) => byKey.get(`${w}${suffix}`)));
    if (ordered.some((s) => s === undefined)) return state;
    return [...state.filter((s) => s.name === 'iter'), ...(ordered as NamedArray[])];
  }

  async close(): Promise<void> {
    for (const group of this.groups) disposeOptimizer(group.optimizer);
  }
}
