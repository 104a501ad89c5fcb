// The tail's forward pass on ONNX Runtime (the train-step compiler's inference-mode graph): validation, calibration and
// the test split run there with the weights the tail's tfjs variables hold, read at the start of each evaluation.
import type { LayersModel, LayerVariable } from '../backend/index.js';
import { OnnxSession } from './runtime.js';
import { compileTailForward, type ForwardGraph, type NchwcTarget } from './train-step.js';

type OrtTensor = import('onnxruntime-node').Tensor;

export class OnnxTail {
  private values: OrtTensor[] = [];

  private constructor(
    private readonly session: OnnxSession,
    private readonly graph: ForwardGraph,
    private readonly variables: LayerVariable[],
    private readonly boundaryShapes: number[][],
  ) {}

  /** Compiles `tail` (throws TrainStepCompileError for a layer without a rule) and opens a session over it. */
  static async open(tail: LayersModel, options: { boundaryShapes: number[][]; nchwc: NchwcTarget | null; threads?: number }): Promise<OnnxTail> {
    const graph = compileTailForward(tail, { nchwc: options.nchwc });
    const byName = new Map(tail.weights.map((w) => [w.originalName, w]));
    const variables = [...graph.trainable, ...graph.state].map((s) => byName.get(s.variable)!);
    const session = await OnnxSession.open(graph.bytes, options.threads ? { threads: options.threads } : {});
    return new OnnxTail(session, graph, variables, options.boundaryShapes);
  }

  /** Reads the tail's current weights and moving statistics (training and calibration change them). */
  refresh(): void {
    const specs = [...this.graph.trainable, ...this.graph.state];
    this.values = this.variables.map((v, i) => this.session.tensor('float32', v.read().dataSync() as Float32Array, specs[i]!.shape));
  }

  /** The probabilities [n, classes] of a batch's boundary arrays (one joined array per tail input). */
  async predict(boundary: Float32Array[], n: number): Promise<Float32Array> {
    if (this.values.length === 0 && this.variables.length > 0) this.refresh();
    const feeds: Record<string, OrtTensor> = {};
    this.graph.boundary.forEach((name, b) => (feeds[name] = this.session.tensor('float32', boundary[b]!, [n, ...this.boundaryShapes[b]!])));
    [...this.graph.trainable, ...this.graph.state].forEach((spec, i) => (feeds[spec.input] = this.values[i]!));
    const out = await this.session.runNamed(feeds);
    return out[this.graph.probs]!.data as Float32Array;
  }

  async close(): Promise<void> {
    await this.session.close();
  }
}
