// Runs a compiled train step on ONNX Runtime: the weights and optimizer slots stay ONNX Runtime tensors that are fed
// back step after step; only the batch, the labels and the scalars are made per step.
import { OnnxSession } from './runtime.js';
import type { TrainStepGraph } from './train-step.js';

type OrtTensor = import('onnxruntime-node').Tensor;

export interface TrainBatch {
  /** Boundary tensors, NHWC, in the tail's input order. */
  boundary: { data: Float32Array; shape: number[] }[];
  labels: Int32Array;
  /** Each image's loss weight (its class weight, or 1). */
  sampleWeights: Float32Array;
  /** One mask per Dropout layer of the graph, in `graph.masks` order (already scaled by 1 / (1 - rate)). */
  masks: Float32Array[];
  lr: number;
}

export interface TrainStepResult {
  loss: number;
  correct: number;
  /** Whether every updated weight is finite. */
  weightsFinite: boolean;
  /** Each trainable weight's gradient, when the graph was compiled with `emitGradients`. */
  gradients: Float32Array[] | null;
}

/** One compiled train step over an ONNX Runtime session, holding the weights and optimizer state it updates. */
export class OnnxTrainer {
  private weights: OrtTensor[];
  private slots: OrtTensor[][];
  private states: OrtTensor[];
  private steps = 0;

  private constructor(private readonly session: OnnxSession, private readonly graph: TrainStepGraph, weights: Float32Array[], states: Float32Array[]) {
    this.weights = graph.trainable.map((spec, i) => session.tensor('float32', weights[i]!, spec.shape));
    this.states = graph.state.map((s, i) => session.tensor('float32', states[i]!, s.shape));
    this.slots = graph.trainable.map((spec) => spec.slots.map(() => session.tensor('float32', new Float32Array(spec.shape.reduce((a, b) => a * b, 1)), spec.shape)));
  }

  /**
   * Opens a session over `graph` with the initial values of its trainable weights (in `graph.trainable` order) and of
   * the state it updates (in `graph.state` order).
   */
  static async open(graph: TrainStepGraph, weights: Float32Array[], options: { threads?: number; states?: Float32Array[] } = {}): Promise<OnnxTrainer> {
    return new OnnxTrainer(await OnnxSession.open(graph.bytes, { ...(options.threads ? { threads: options.threads } : {}) }), graph, weights, options.states ?? []);
  }

  /** Optimizer steps taken (Adam's bias correction counts them). */
  get iterations(): number {
    return this.steps;
  }

  /** One optimizer step on a batch. */
  async step(batch: TrainBatch): Promise<TrainStepResult> {
    const g = this.graph;
    const n = batch.labels.length;
    const feeds: Record<string, OrtTensor> = {
      [g.inputs.labels]: this.session.tensor('int64', BigInt64Array.from(batch.labels, (v) => BigInt(v)), [n]),
      [g.inputs.sampleWeights]: this.session.tensor('float32', batch.sampleWeights, [n]),
      [g.inputs.lr]: this.session.tensor('float32', Float32Array.of(batch.lr), []),
      [g.inputs.step]: this.session.tensor('float32', Float32Array.of(this.steps + 1), []),
    };
    g.boundary.forEach((name, i) => (feeds[name] = this.session.tensor('float32', batch.boundary[i]!.data, batch.boundary[i]!.shape)));
    g.masks.forEach((m, i) => (feeds[m.input] = this.session.tensor('float32', batch.masks[i]!, [n, ...m.shape.slice(1)])));
    g.trainable.forEach((spec, i) => {
      feeds[spec.input] = this.weights[i]!;
      spec.slots.forEach((slot, k) => (feeds[slot.input] = this.slots[i]![k]!));
    });
    g.state.forEach((s, i) => (feeds[s.input] = this.states[i]!));
    const out = await this.session.runNamed(feeds);
    this.weights = g.trainable.map((spec) => out[spec.output]!);
    this.states = g.state.map((s) => out[s.output]!);
    this.slots = g.trainable.map((spec) => spec.slots.map((slot) => out[slot.output]!));
    this.steps++;
    const gradients = g.trainable.every((spec) => spec.gradient !== null) ? g.trainable.map((spec) => out[spec.gradient!]!.data as Float32Array) : null;
    return { loss: (out[g.outputs.loss]!.data as Float32Array)[0]!, correct: (out[g.outputs.correct]!.data as Float32Array)[0]!, weightsFinite: Number.isFinite((out[g.outputs.weightsSum]!.data as Float32Array)[0]!), gradients };
  }

  /** Replaces the weights, the optimizer slots (each in `spec.slots` order; empty: zeros) and the step count. */
  load(weights: Float32Array[], slots: (Float32Array[] | null)[], steps: number, states: Float32Array[] = []): void {
    this.states = this.graph.state.map((s, i) => this.session.tensor('float32', states[i]!, s.shape));
    this.weights = this.graph.trainable.map((spec, i) => this.session.tensor('float32', weights[i]!, spec.shape));
    this.slots = this.graph.trainable.map((spec, i) => spec.slots.map((_, k) => this.session.tensor('float32', slots[i]?.[k] ?? new Float32Array(spec.shape.reduce((a, b) => a * b, 1)), spec.shape)));
    this.steps = steps;
  }

  /** Replaces the state the step updates (BatchNorm moving statistics), in `graph.state` order. */
  setStates(states: Float32Array[]): void {
    this.states = this.graph.state.map((s, i) => this.session.tensor('float32', states[i]!, s.shape));
  }

  /** The current values of the state the step updates, in `graph.state` order. */
  currentStates(): Float32Array[] {
    return this.states.map((t) => t.data as Float32Array);
  }

  /** The current optimizer slots, per trainable weight in `spec.slots` order. */
  currentSlots(): Float32Array[][] {
    return this.slots.map((list) => list.map((t) => t.data as Float32Array));
  }

  /** The current trainable weights, in `graph.trainable` order. */
  currentWeights(): Float32Array[] {
    return this.weights.map((t) => t.data as Float32Array);
  }

  async close(): Promise<void> {
    await this.session.close();
  }
}
