// The tail's forward pass on ONNX Runtime (the train-step compiler's inference-mode graph): validation, calibration and
// the test split run there with the weights the tail's tfjs variables hold, read at the start of each evaluation.
import type { LayersModel, LayerVariable } from '../backend/index.js';
import { OnnxSession } from './runtime.js';
import { compileBatchStatistics, compileTailForward, type ForwardGraph, type NchwcTarget, type StatisticsGraph } from './train-step.js';

type OrtTensor = import('onnxruntime-node').Tensor;

export class OnnxTail {
  private values: OrtTensor[] = [];
  private statistics: Promise<{ session: OnnxSession; graph: StatisticsGraph }> | null = null;

  private constructor(
    private readonly session: OnnxSession,
    private readonly graph: ForwardGraph,
    private readonly variables: LayerVariable[],
    private readonly boundaryShapes: number[][],
    private readonly tail: LayersModel,
    private readonly options: { nchwc: NchwcTarget | null; threads?: number },
  ) {}

  /** Compiles `tail` (throws TrainStepCompileError for a layer without a rule) and opens a session over it. */
  static async open(tail: LayersModel, options: { boundaryShapes: number[][]; nchwc: NchwcTarget | null; threads?: number }): Promise<OnnxTail> {
    const graph = compileTailForward(tail, { nchwc: options.nchwc });
    const byName = new Map(tail.weights.map((w) => [w.originalName, w]));
    const variables = [...graph.trainable, ...graph.state].map((s) => byName.get(s.variable)!);
    const session = await OnnxSession.open(graph.bytes, { ...(options.threads ? { threads: options.threads } : {}), spinning: false });
    return new OnnxTail(session, graph, variables, options.boundaryShapes, tail, { nchwc: options.nchwc, ...(options.threads ? { threads: options.threads } : {}) });
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

  /**
   * Each training BatchNormalization's batch mean and variance over a batch (by the moving statistic's variable name),
   * as a training-mode forward pass computes them (precise BatchNorm averages these); with the weights of the last
   * `refresh`. The graph is compiled on first use.
   */
  async batchStatistics(boundary: Float32Array[], n: number): Promise<Map<string, Float32Array>> {
    this.statistics ??= (async () => {
      const graph = compileBatchStatistics(this.tail, { nchwc: this.options.nchwc });
      return { graph, session: await OnnxSession.open(graph.bytes, { ...(this.options.threads ? { threads: this.options.threads } : {}), spinning: false }) };
    })();
    const { graph, session } = await this.statistics;
    if (this.values.length === 0 && this.variables.length > 0) this.refresh();
    const value = new Map(this.graph.trainable.map((spec, i) => [spec.variable, this.values[i]!]));
    const feeds: Record<string, OrtTensor> = {};
    graph.boundary.forEach((name, b) => (feeds[name] = session.tensor('float32', boundary[b]!, [n, ...this.boundaryShapes[b]!])));
    for (const spec of graph.trainable) feeds[spec.input] = value.get(spec.variable)!;
    const out = await session.runNamed(feeds);
    return new Map(graph.statistics.map((s) => [s.variable, out[s.output]!.data as Float32Array]));
  }

  async close(): Promise<void> {
    await this.session.close();
    if (this.statistics) await (await this.statistics).session.close();
  }
}
