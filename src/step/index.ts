// What computes an optimizer step, whichever engine it is (TensorFlow.js: tfjs.ts; ONNX Runtime: onnx.ts): the interface
// the phase and epoch loop uses, the arrays weights and optimizer slots travel as, and the optimizers (optim.ts).
import type { EngineName } from '../engine/names.js';
import type { Tensor, Tf } from '../backend/index.js';

/** One optimizer step's inputs: the batch's boundary arrays (one joined array per tail input) and its labels. */
export interface StepInput {
  boundary: Float32Array[];
  /** Each image's class (of a mixed batch: its dominant one, which the accuracy counts). */
  labels: Int32Array;
  /** Mixup and CutMix: each image's soft target, row-major [n, classes], smoothing applied; the loss uses these then. */
  targets?: Float32Array;
  lr: number;
  /** Seeds this step's dropout masks; both engines draw the same masks from it. */
  dropoutSeed: number;
}

/**
 * A checkpoint names each optimizer slot by its weight's own name and the slot's tfjs name (`block_16_project/kernel/m`).
 * TensorFlow.js names variables uniquely within a process (`kernel_1` once a model with the same layer names has been
 * built), so a checkpoint written under those names restored nothing in a process that numbered them differently.
 * This maps a name a checkpoint holds (either form) to the weight's own.
 */
export function slotKey(name: string): string {
  return name.replace(/_\d+(\/[a-z]+)$/, '$1');
}

/**
 * Trains a cut's tail for one phase. Weights start from the tail's tfjs variables; `syncWeights` writes them back
 * (validation, the best weights, checkpoints and the saved model read the variables). Optimizer state is ordered as
 * tfjs's optimizers order it and named by `slotKey`, so a checkpoint written by one engine resumes on the other.
 */
export interface Trainer {
  readonly engine: EngineName;
  /** Restores a checkpoint's optimizer state (iteration count and slots); null starts fresh. */
  loadOptimizerState(state: NamedArray[] | null): Promise<void>;
  step(input: StepInput): Promise<{ loss: number; correct: number }>;
  /** How many batches of this size `steps` takes at once (engines without it step one batch at a time). */
  chunkFor?(batchSize: number): number;
  /** Steps on batches of one size, in order; `finite`: whether the weights after that step are. */
  steps?(inputs: StepInput[]): Promise<{ loss: number; correct: number; finite: boolean }[]>;
  /** Whether every trainable weight is finite after the last step. */
  weightsFinite(): boolean;
  syncWeights(): void;
  /** Takes the BatchNorm moving statistics from the tfjs variables again (after they were recomputed there). */
  reloadStates(): void;
  optimizerState(): Promise<NamedArray[]>;
  close(): Promise<void>;
}

/** A named array of a weight or an optimizer slot (what checkpoints hold, on either engine). */
export interface NamedArray {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

/**
 * Reads tensors' values (e.g. a model's weights or an optimizer's state) into plain arrays: tensors never change, so
 * their data is taken as it is, not copied.
 */
export async function toArrays(named: { name: string; tensor: Tensor }[]): Promise<NamedArray[]> {
  return Promise.all(
    named.map(async ({ name, tensor }) => {
      const data = await tensor.data();
      const int = tensor.dtype === 'int32';
      return { name, shape: tensor.shape as number[], dtype: int ? ('int32' as const) : ('float32' as const), data: int ? (data instanceof Int32Array ? data : Int32Array.from(data)) : data instanceof Float32Array ? data : Float32Array.from(data) };
    }),
  );
}

/** Tensors from arrays read back; the caller disposes them. */
export function toTensors(tf: Tf, arrays: NamedArray[]): { name: string; tensor: Tensor }[] {
  return arrays.map((a) => ({ name: a.name, tensor: tf.tensor(a.data, a.shape, a.dtype) }));
}
