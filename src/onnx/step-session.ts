// Runs a compiled train step on ONNX Runtime: the weights and optimizer slots stay ONNX Runtime tensors that are fed
// back step after step; only the batch, the labels and the scalars are made per step. In loop mode (on the CPU) the
// session holds the step as the body of an ONNX Loop, and `steps` runs a chunk of equal-sized batches in one run: the
// weights and slots pass from step to step inside ONNX Runtime and are copied out once per chunk.
import { concatFloat32 } from '../util/arrays.js';
import { OnnxSession } from './runtime.js';
import { compileTrainLoop, type TrainLoopGraph } from './train-loop.js';
import type { TrainStepGraph } from './train-step.js';

type OrtTensor = import('onnxruntime-node').Tensor;

export interface TrainBatch {
  /** Boundary tensors, NHWC, in the tail's input order. */
  boundary: { data: Float32Array; shape: number[] }[];
  labels: Int32Array;
  /** Soft targets [n, classes] (a step compiled for them: mixup, CutMix). */
  targets?: Float32Array;
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

/** The classes of a batch's soft targets: their length over its `n` rows. */
const targetWidth = (batch: TrainBatch, n: number) => batch.targets!.length / n;

/** One compiled train step over an ONNX Runtime session, holding the weights and optimizer state it updates. */
export class StepSession {
  private weights: OrtTensor[];
  private slots: OrtTensor[][];
  private states: OrtTensor[];
  private stepCount = 0;

  private constructor(private readonly session: OnnxSession, private readonly graph: TrainStepGraph, weights: Float32Array[], states: Float32Array[], private readonly loop: TrainLoopGraph | null) {
    this.weights = graph.trainable.map((spec, i) => session.tensor('float32', weights[i]!, spec.shape));
    this.states = graph.state.map((s, i) => session.tensor('float32', states[i]!, s.shape));
    this.slots = graph.trainable.map((spec) => spec.slots.map(() => session.tensor('float32', new Float32Array(spec.shape.reduce((a, b) => a * b, 1)), spec.shape)));
  }

  /**
   * Opens a session over `graph` with the initial values of its trainable weights (in `graph.trainable` order) and of
   * the state it updates (in `graph.state` order).
   */
  static async open(graph: TrainStepGraph, weights: Float32Array[], options: { threads?: number; states?: Float32Array[]; loop?: boolean } = {}): Promise<StepSession> {
    // Without ONNX Runtime's memory pattern, which plans a block per input shape (an epoch's short last batch is a
    // second one): the train step's session then held about half the memory (268 against 516 MiB for MobileNetV2
    // --freeze 100 in chunks of 8), at the same speed.
    // Nor with spinning threads: the step takes turns with the frozen part's session (every step with --augment) and
    // the tail's evaluation; measured on whole MobileNetV2 --freeze 100 runs, 8% faster with --augment, level without.
    const threads = { ...(options.threads ? { threads: options.threads } : {}), memoryPattern: false, spinning: false };
    if (options.loop && graph.trainable.every((s) => s.gradient === null)) {
      const loop = compileTrainLoop(graph);
      const session = await OnnxSession.open(loop.bytes, threads);
      // Control flow on a GPU provider runs its body node by node through the CPU: there the plain step is kept.
      if (session.device === 'cpu') return new StepSession(session, graph, weights, options.states ?? [], loop);
      await session.close();
    }
    return new StepSession(await OnnxSession.open(graph.bytes, threads), graph, weights, options.states ?? [], null);
  }

  /** Whether `steps` runs a chunk in one ONNX Runtime run. */
  get chunked(): boolean {
    return this.loop !== null;
  }

  /** Optimizer steps taken (Adam's bias correction counts them). */
  get iterations(): number {
    return this.stepCount;
  }

  /**
   * Optimizer steps on a chunk of batches of one size, in order. In loop mode one run does them all; the weights
   * after the chunk are those after its last step (each step's `weightsFinite` says whether that step's were finite).
   */
  async steps(given: TrainBatch[]): Promise<TrainStepResult[]> {
    given.forEach((b) => this.checkBatch(b.labels.length));
    const batches = given.map((b) => this.padded(b));
    if (this.loop === null) {
      const out: TrainStepResult[] = [];
      for (const b of batches) out.push(await this.step(b));
      return out;
    }
    if (batches.length === 0) return [];
    const g = this.graph;
    const loop = this.loop;
    const k = batches.length;
    const n = batches[0]!.labels.length;
    if (batches.some((b) => b.labels.length !== n)) throw new Error('StepSession.steps: the batches of a chunk differ in size');
    // Parts that already lie end to end in one buffer (a chunk's boundary, see FrozenPart.boundary) are fed as one view.
    const stack = (parts: Float32Array[]) => {
      const first = parts[0]!;
      const adjacent = parts.every((p, i) => p.buffer === first.buffer && p.byteOffset === first.byteOffset + i * first.byteLength && p.length === first.length);
      return adjacent ? new Float32Array(first.buffer, first.byteOffset, first.length * parts.length) : concatFloat32(parts);
    };
    const feeds: Record<string, OrtTensor> = {
      [loop.trips]: this.session.tensor('int64', BigInt64Array.of(BigInt(k)), []),
      [loop.firstStep]: this.session.tensor('float32', Float32Array.of(this.stepCount + 1), []),
      [loop.stacked[g.inputs.labels]!]: this.session.tensor('int64', BigInt64Array.from(batches.flatMap((b) => Array.from(b.labels, (v) => BigInt(v)))), [k, n]),
      [loop.stacked[g.inputs.sampleWeights]!]: this.session.tensor('float32', stack(batches.map((b) => b.sampleWeights)), [k, n]),
      [loop.stacked[g.inputs.lr]!]: this.session.tensor('float32', Float32Array.from(batches, (b) => b.lr), [k]),
    };
    if (g.inputs.targets) feeds[loop.stacked[g.inputs.targets]!] = this.session.tensor('float32', stack(batches.map((b) => this.targetsOf(b))), [k, n, targetWidth(batches[0]!, n)]);
    g.boundary.forEach((name, i) => (feeds[loop.stacked[name]!] = this.session.tensor('float32', stack(batches.map((b) => b.boundary[i]!.data)), [k, ...batches[0]!.boundary[i]!.shape])));
    g.masks.forEach((m, i) => (feeds[loop.stacked[m.input]!] = this.session.tensor('float32', stack(batches.map((b) => b.masks[i]!)), [k, n, ...m.shape.slice(1)])));
    g.trainable.forEach((spec, i) => {
      feeds[loop.initial[spec.input]!] = this.weights[i]!;
      spec.slots.forEach((slot, j) => (feeds[loop.initial[slot.input]!] = this.slots[i]![j]!));
    });
    g.state.forEach((s, i) => (feeds[loop.initial[s.input]!] = this.states[i]!));
    const out = await this.session.runNamed(feeds);
    this.weights = g.trainable.map((spec) => out[loop.final[spec.output]!]!);
    this.states = g.state.map((s) => out[loop.final[s.output]!]!);
    this.slots = g.trainable.map((spec) => spec.slots.map((slot) => out[loop.final[slot.output]!]!));
    this.stepCount += k;
    const loss = out[loop.outputs.loss]!.data as Float32Array;
    const correct = out[loop.outputs.correct]!.data as Float32Array;
    const sums = out[loop.outputs.weightsSum]!.data as Float32Array;
    return Array.from({ length: k }, (_, i) => ({ loss: loss[i]!, correct: correct[i]!, weightsFinite: Number.isFinite(sums[i]!), gradients: null }));
  }

  /** One optimizer step on a batch. */
  async step(given: TrainBatch): Promise<TrainStepResult> {
    if (this.loop !== null) return (await this.steps([given]))[0]!;
    this.checkBatch(given.labels.length);
    const batch = this.padded(given);
    const g = this.graph;
    const n = batch.labels.length;
    const feeds: Record<string, OrtTensor> = {
      [g.inputs.labels]: this.session.tensor('int64', BigInt64Array.from(batch.labels, (v) => BigInt(v)), [n]),
      [g.inputs.sampleWeights]: this.session.tensor('float32', batch.sampleWeights, [n]),
      [g.inputs.lr]: this.session.tensor('float32', Float32Array.of(batch.lr), []),
      [g.inputs.step]: this.session.tensor('float32', Float32Array.of(this.stepCount + 1), []),
    };
    if (g.inputs.targets) feeds[g.inputs.targets] = this.session.tensor('float32', this.targetsOf(batch), [n, targetWidth(batch, n)]);
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
    this.stepCount++;
    const gradients = g.trainable.every((spec) => spec.gradient !== null) ? g.trainable.map((spec) => out[spec.gradient!]!.data as Float32Array) : null;
    return { loss: (out[g.outputs.loss]!.data as Float32Array)[0]!, correct: (out[g.outputs.correct]!.data as Float32Array)[0]!, weightsFinite: Number.isFinite((out[g.outputs.weightsSum]!.data as Float32Array)[0]!), gradients };
  }

  /** A batch's soft targets, which a step compiled for them needs. */
  private targetsOf(batch: TrainBatch): Float32Array {
    if (!batch.targets) throw new Error('StepSession: this step was compiled for soft targets and the batch has none');
    return batch.targets;
  }

  /** A batch larger than the graph folds (see NchwcTarget) would lose images from the weight gradient: refused. */
  private checkBatch(n: number): void {
    if (this.graph.maxBatch !== null && n > this.graph.maxBatch) throw new Error(`StepSession: a batch of ${n} images; the step was compiled for at most ${this.graph.maxBatch}`);
  }

  /** A short batch for a graph of fixed batch size: zero rows of sample weight 0 after the images (see fixedBatch). */
  private padded(batch: TrainBatch): TrainBatch {
    const size = this.graph.fixedBatch;
    const n = batch.labels.length;
    if (size === null || n === size) return batch;
    const grow = <T extends Float32Array | Int32Array>(a: T, make: (length: number) => T): T => {
      const out = make((a.length / n) * size);
      out.set(a);
      return out;
    };
    return {
      boundary: batch.boundary.map((b) => ({ data: grow(b.data, (l) => new Float32Array(l)), shape: [size, ...b.shape.slice(1)] })),
      labels: grow(batch.labels, (l) => new Int32Array(l)),
      ...(batch.targets ? { targets: grow(batch.targets, (l) => new Float32Array(l)) } : {}),
      sampleWeights: grow(batch.sampleWeights, (l) => new Float32Array(l)),
      masks: batch.masks.map((m) => grow(m, (l) => new Float32Array(l))),
      lr: batch.lr,
    };
  }

  /** Replaces the weights, the optimizer slots (each in `spec.slots` order; empty: zeros) and the step count. */
  load(weights: Float32Array[], slots: (Float32Array[] | null)[], steps: number, states: Float32Array[] = []): void {
    this.states = this.graph.state.map((s, i) => this.session.tensor('float32', states[i]!, s.shape));
    this.weights = this.graph.trainable.map((spec, i) => this.session.tensor('float32', weights[i]!, spec.shape));
    this.slots = this.graph.trainable.map((spec, i) => spec.slots.map((_, k) => this.session.tensor('float32', slots[i]?.[k] ?? new Float32Array(spec.shape.reduce((a, b) => a * b, 1)), spec.shape)));
    this.stepCount = steps;
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
