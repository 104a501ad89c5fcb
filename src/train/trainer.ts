// What the phase and epoch loop needs from whatever computes a training step: the loop never knows which engine it is.
import type { NamedArray } from './checkpoint.js';

/** One optimizer step's inputs: the batch's boundary arrays (one joined array per tail input) and its labels. */
export interface StepInput {
  boundary: Float32Array[];
  labels: Int32Array;
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
  readonly engine: 'onnx' | 'tfjs';
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
