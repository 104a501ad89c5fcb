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
 * Trains a cut's tail for one phase. Weights start from the tail's tfjs variables; `syncWeights` writes them back
 * (validation, the best weights, checkpoints and the saved model read the variables). Optimizer state is named and
 * ordered as tfjs's optimizers name it, so a checkpoint written by one engine resumes on the other.
 */
export interface Trainer {
  readonly engine: 'onnx' | 'tfjs';
  /** Restores a checkpoint's optimizer state (iteration count and slots); null starts fresh. */
  loadOptimizerState(state: NamedArray[] | null): Promise<void>;
  step(input: StepInput): Promise<{ loss: number; correct: number }>;
  /** Whether every trainable weight is finite after the last step. */
  weightsFinite(): boolean;
  syncWeights(): void;
  /** Takes the BatchNorm moving statistics from the tfjs variables again (after they were recomputed there). */
  reloadStates(): void;
  optimizerState(): Promise<NamedArray[]>;
  close(): Promise<void>;
}
