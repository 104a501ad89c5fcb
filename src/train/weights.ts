// The weights a run trains, in layer order, with a digest of those it never trains.
import type { LayersModel, LayerVariable, Tensor, Tf } from '../backend/index.js';
import { TlError } from '../errors.js';
import { digestWeights } from '../shard/index.js';
import { toArrays, type NamedArray } from '../step/index.js';

/**
 * The weights of the layers that train in some phase, in layer order (tfjs's `model.weights` lists trainable weights
 * first, so its order changes with the phase). Layers frozen in every phase never change: checkpoints hold only the
 * others, with a digest of the frozen ones that a resumed run checks (the backbone is not stored a third time).
 */
export class LayerOrderWeights {
  private readonly variables: LayerVariable[];
  private readonly frozen: LayerVariable[];

  constructor(
    private readonly tf: Tf,
    model: LayersModel,
    frozenLayers: number,
  ) {
    this.variables = model.layers.slice(frozenLayers).flatMap((l) => l.weights);
    this.frozen = model.layers.slice(0, frozenLayers).flatMap((l) => l.weights);
  }

  /** sha256 over the never-trained weights' names, shapes and values. */
  frozenDigest(): string {
    return digestWeights(this.frozen);
  }

  snapshot(): Tensor[] {
    return this.tf.tidy(() => this.variables.map((w) => this.tf.keep(w.read().clone())));
  }

  restore(values: Tensor[]): void {
    this.tf.tidy(() => this.variables.forEach((w, i) => w.write(values[i]!.clone())));
  }

  arrays(): Promise<NamedArray[]> {
    return toArrays(this.variables.map((w) => ({ name: w.originalName, tensor: w.read() })));
  }

  /** Sets the weights from a checkpoint's arrays (these weights, or every weight as older checkpoints hold), checking names and shapes. */
  load(arrays: NamedArray[], path: string): void {
    const weights = arrays.length === this.variables.length + this.frozen.length && this.frozen.length > 0 ? [...this.frozen, ...this.variables] : this.variables;
    if (arrays.length !== weights.length) throw new TlError('E_CHECKPOINT', `${path} holds ${arrays.length} weights; the model has ${weights.length}. It was written for another model or configuration.`);
    weights.forEach((w, i) => {
      const a = arrays[i]!;
      if (a.name !== w.originalName || a.shape.join(',') !== w.shape.join(',')) throw new TlError('E_CHECKPOINT', `${path}: weight ${i} is '${a.name}' [${a.shape.join(',')}]; the model expects '${w.originalName}' [${w.shape.join(',')}].`);
    });
    this.tf.tidy(() => weights.forEach((w, i) => w.write(this.tf.tensor(arrays[i]!.data, arrays[i]!.shape))));
  }
}
