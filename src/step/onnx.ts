// Trains a cut's tail on ONNX Runtime through a compiled train-step graph. During an epoch the weights and optimizer
// slots live in ONNX Runtime; `syncWeights` mirrors them into the tfjs variables (for validation, the best weights,
// the saved model) and the optimizer state is given in tfjs's own names, so checkpoints are the same on either engine.
import type { LayersModel, LayerVariable, Tf } from '../backend/index.js';
import { compileTrainStep, type NchwcTarget, type TrainStepGraph } from '../onnx/train-step.js';
import { nchwcBlockSize, resolvedDevice } from '../onnx/runtime.js';
import { StepSession, type TrainBatch } from '../onnx/step-session.js';
import type { LossConfig } from '../model/loss.js';
import { dropoutMask } from '../util/dropout.js';
import { mixSeed } from '../util/random.js';
import type { OptimizerConfig } from './optim.js';
import { slotKey, type NamedArray, type StepInput, type Trainer } from './index.js';

/** tfjs's name for each slot kind (`<variable>/<suffix>`), in the order its getWeights lists them. */
const SLOT_SUFFIX = { m: 'm', v: 'v', accum: 'momentum', ms: 'rms', mom: 'momentum' } as const;

/** Carried state above which a step runs alone: see `chunkSize`. */
const LOOP_STATE_BYTES = 64 * 2 ** 20;

/** Bytes of what a step carries to the next: trainable weights with their optimizer slots, and moving statistics. */
export function carriedBytes(graph: TrainStepGraph): number {
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  return 4 * (graph.trainable.reduce((a, spec) => a + size(spec.shape) * (1 + spec.slots.length), 0) + graph.state.reduce((a, s) => a + size(s.shape), 0));
}

/**
 * Batches per ONNX Runtime run (the Loop form above 1): up to 8 while their boundary tensors, stacked for the run,
 * stay within 128 MiB. 1 when the step carries more than 64 MiB: the Loop holds what it carries about twice more
 * (ResNet50 --freeze 140's 180 MB of weights and Adam slots cost 500 MB more in chunks of 5, for 9% of its step
 * time), while MobileNetV2 --freeze 100's 22 MB gain about 4% at little memory.
 */
export function chunkSize(carried: number, boundaryShapes: number[][], batchSize: number): number {
  if (carried > LOOP_STATE_BYTES) return 1;
  const bytes = 4 * batchSize * boundaryShapes.reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
  return Math.max(1, Math.min(8, Math.floor((128 * 2 ** 20) / Math.max(1, bytes))));
}

/**
 * The NCHWc lowering where sessions run on the CPU and ONNX Runtime has those kernels (x86-64 with AVX2 or AVX-512);
 * elsewhere (GPU providers, other CPUs) null, the portable lowering.
 */
export async function nchwcTarget(batchSize: number): Promise<NchwcTarget | null> {
  if (resolvedDevice() !== 'cpu') return null;
  const block = await nchwcBlockSize();
  return block > 0 ? { block, batch: batchSize } : null;
}

export interface TailTrainerConfig {
  optimizer: OptimizerConfig;
  loss: LossConfig;
  weightDecay: number;
  boundaryShapes: number[][];
  /** The largest batch a step takes. */
  batchSize: number;
  threads?: number;
  /** Discriminative rates: each weight's multiple of the rate, by name (null: one rate). */
  lrScales?: Record<string, number> | null;
}

export class OnnxTrainer implements Trainer {
  readonly engine = 'onnx' as const;
  private readonly variables: LayerVariable[];
  private readonly stateVariables: LayerVariable[];
  /** Each Dropout layer's index in the tail (it seeds its mask) and rate, in the graph's mask order. */
  private readonly dropouts: { index: number; rate: number; shape: number[] }[];
  private finite = true;

  private constructor(
    private readonly tf: Tf,
    tail: LayersModel,
    private readonly graph: TrainStepGraph,
    private readonly trainer: StepSession,
    private readonly loss: LossConfig,
    private readonly boundaryShapes: number[][],
  ) {
    this.variables = graph.trainable.map((spec) => tail.trainableWeights.find((w) => w.originalName === spec.variable)!);
    this.stateVariables = graph.state.map((s) => tail.weights.find((w) => w.originalName === s.variable)!);
    this.dropouts = graph.masks.map((m) => {
      const index = tail.layers.findIndex((l) => l.name === m.layer);
      return { index, rate: (tail.layers[index]!.getConfig() as { rate: number }).rate, shape: m.shape.slice(1) };
    });
  }

  /**
   * Compiles `tail`'s train step for batches of up to `batchSize` images; throws TrainStepCompileError naming a layer
   * it cannot differentiate.
   */
  static async compile(tail: LayersModel, config: TailTrainerConfig): Promise<TrainStepGraph> {
    const nchwc = await nchwcTarget(config.batchSize);
    return compileTrainStep(tail, { optimizer: config.optimizer.optimizer, momentum: config.optimizer.momentum, nesterov: config.optimizer.nesterov, labelSmoothing: config.loss.labelSmoothing, softTargets: config.loss.softTargets ?? false, multiLabel: config.loss.multiLabel ?? null, lrScales: config.lrScales ?? null, weightDecay: config.weightDecay, nchwc });
  }

  /** Compiles `tail` (see `compile`), or takes its compiled `graph`, and opens a session with the tail's weights. */
  static async open(tf: Tf, tail: LayersModel, config: TailTrainerConfig, compiled?: TrainStepGraph): Promise<OnnxTrainer> {
    const graph = compiled ?? (await OnnxTrainer.compile(tail, config));
    const weights = graph.trainable.map((spec) => tail.trainableWeights.find((w) => w.originalName === spec.variable)!.read().dataSync() as Float32Array);
    const states = graph.state.map((s) => tail.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array);
    const trainer = await StepSession.open(graph, weights, { ...(config.threads ? { threads: config.threads } : {}), states, loop: chunkSize(carriedBytes(graph), config.boundaryShapes, config.batchSize) > 1 });
    return new OnnxTrainer(tf, tail, graph, trainer, config.loss, config.boundaryShapes);
  }

  async loadOptimizerState(state: NamedArray[] | null): Promise<void> {
    const byName = new Map((state ?? []).map((s) => [slotKey(s.name), s.data]));
    const iterations = byName.get('iter');
    const slots = this.graph.trainable.map((spec) => {
      const values = spec.slots.map((slot) => byName.get(`${spec.variable}/${SLOT_SUFFIX[slot.kind]}`));
      return values.every((v) => v !== undefined) ? values.map((v) => Float32Array.from(v!)) : null;
    });
    this.trainer.load(this.variables.map((v) => v.read().dataSync() as Float32Array), slots, iterations ? Number(iterations[0]) : 0, this.stateVariables.map((v) => v.read().dataSync() as Float32Array));
  }

  /** The step's inputs, with the masks tfjs's Dropout layers would draw for this batch on one thread. */
  private batchOf({ boundary, labels, targets, lr, dropoutSeed }: StepInput): TrainBatch {
    const n = labels.length;
    const seed = mixSeed(mixSeed(dropoutSeed, 0), 0);
    const masks = this.dropouts.map((d) => dropoutMask(n * d.shape.reduce((a, b) => a * b, 1), d.rate, mixSeed(seed, d.index)));
    const sampleWeights = Float32Array.from(labels, (l) => this.loss.classWeights?.[l] ?? 1);
    return { boundary: boundary.map((data, b) => ({ data, shape: [n, ...this.boundaryShapes[b]!] })), labels, ...(targets ? { targets } : {}), sampleWeights, masks, lr };
  }

  /** One optimizer step on a batch's boundary arrays, with the tfjs engine's seeded dropout masks. */
  async step(input: StepInput): Promise<{ loss: number; correct: number }> {
    const r = await this.trainer.step(this.batchOf(input));
    this.finite = r.weightsFinite;
    return { loss: r.loss, correct: r.correct };
  }

  /** Batches of `batchSize` images that one run takes (see `chunkSize`); 1 where the session runs the plain step. */
  chunkFor(batchSize: number): number {
    if (!this.trainer.chunked) return 1;
    return chunkSize(carriedBytes(this.graph), this.boundaryShapes, batchSize);
  }

  /** Steps on batches of one size, in order, in one run where the session allows; each step's own finiteness. */
  async steps(inputs: StepInput[]): Promise<{ loss: number; correct: number; finite: boolean }[]> {
    const rs = await this.trainer.steps(inputs.map((input) => this.batchOf(input)));
    this.finite = rs.every((r) => r.weightsFinite);
    return rs.map((r) => ({ loss: r.loss, correct: r.correct, finite: r.weightsFinite }));
  }

  /** Checked in the graph: one summed output per step. */
  weightsFinite(): boolean {
    return this.finite;
  }

  /** Mirrors the current weights (and moving statistics) into the tfjs variables. */
  syncWeights(): void {
    const weights = this.trainer.currentWeights();
    const states = this.trainer.currentStates();
    this.tf.tidy(() => {
      this.variables.forEach((v, i) => v.write(this.tf.tensor(weights[i]!, v.shape as number[])));
      this.stateVariables.forEach((v, i) => v.write(this.tf.tensor(states[i]!, v.shape as number[])));
    });
  }

  reloadStates(): void {
    this.trainer.setStates(this.stateVariables.map((v) => v.read().dataSync() as Float32Array));
  }

  /** The optimizer state as tfjs's optimizer names and orders it (what a checkpoint holds on either engine). */
  async optimizerState(): Promise<NamedArray[]> {
    const slots = this.trainer.currentSlots();
    const kinds = this.graph.trainable[0]?.slots.map((s) => s.kind) ?? [];
    const out: NamedArray[] = [{ name: 'iter', shape: [], dtype: 'int32', data: Int32Array.of(this.trainer.iterations) }];
    kinds.forEach((kind, k) => {
      this.graph.trainable.forEach((spec, i) => {
        // The slots' arrays are ONNX Runtime's outputs of a finished run: the next run replaces them, never writes them.
        out.push({ name: `${spec.variable}/${SLOT_SUFFIX[kind]}`, shape: spec.shape, dtype: 'float32', data: slots[i]![k]! });
      });
    });
    return out;
  }

  async close(): Promise<void> {
    await this.trainer.close();
  }
}
