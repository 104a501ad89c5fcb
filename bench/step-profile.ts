// The cached train step alone: ms per step of a tail's compiled graph on ONNX Runtime, and (`--profile`) ONNX
// Runtime's own profile aggregated per operator type. Random weights and boundary tensors (the step's time does not
// depend on them). `node dist/bench/step-profile.js --model mobilenet_v2 --freeze 100`.
import { readFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { loadBackend, type LayersModel, type Tf } from '../src/backend/index.js';
import { applyTrainability, attachHead, cutModel } from '../src/model/index.js';
import { compileTrainStep, type TrainStepGraph } from '../src/onnx/train-step.js';
import { StepSession } from '../src/onnx/step-session.js';
import { loadOrt } from '../src/onnx/runtime.js';
import { carriedBytes, chunkSize, nchwcTarget } from '../src/step/onnx.js';
import { buildVariant } from '../src/registry/index.js';
import { initializeWeights } from '../src/registry/init.js';

export interface StepProfile {
  model: string;
  freeze: number;
  batch: number;
  msPerStep: number;
  nodes: number;
  /** 3 x the forward FLOPs of the batch through the tail's convolutions and dense layers. */
  stepFlops: number;
  /** Steps per run (the Loop form when above 1). */
  chunk: number;
  /** How depthwise windows were lowered: ONNX Runtime's NCHWc kernels or gathered taps. */
  lowering: 'nchwc' | 'gather';
  /** The tail's boundary tensors' shapes, without the batch axis. */
  boundaryShapes: number[][];
  /** Bytes the step carries to the next (weights, optimizer slots, moving statistics). */
  carriedBytes: number;
  /** Kernel time per op type over the profiled steps, largest first. */
  ops: { op: string; ms: number; share: number; calls: number; bytes: number }[];
  /** The slowest nodes: op type, output shape and ms per step. */
  nodes_: { op: string; shape: string; ms: number }[];
}

/**
 * Multiply-adds of one image through the tail's convolutions and dense layers, times 2 (FLOPs); a train step does
 * about three times that per image (forward, the weight gradient, the input gradient).
 */
function forwardFlops(tail: LayersModel): number {
  let flops = 0;
  for (const layer of tail.layers) {
    const cls = layer.getClassName();
    const kernel = layer.weights.find((w) => /kernel/.test(w.originalName))?.shape as number[] | undefined;
    if (!kernel) continue;
    const outShape = layer.outputShape as number[];
    const outputs = outShape.slice(1).reduce((a, b) => a * (b ?? 1), 1);
    if (cls === 'Conv2D') flops += 2 * outputs * kernel[0]! * kernel[1]! * kernel[2]!;
    else if (cls === 'DepthwiseConv2D') flops += 2 * outputs * kernel[0]! * kernel[1]!;
    else if (cls === 'Dense') flops += 2 * outputs * kernel[0]!;
  }
  return flops;
}

export async function tailGraph(tf: Tf, model: string, freeze: number, options: { classes?: number; batch?: number; lowering?: 'nchwc' | 'gather' } = {}): Promise<{ graph: TrainStepGraph; weights: Float32Array[]; states: Float32Array[]; boundaryShapes: number[][]; flopsPerImage: number; frozen: LayersModel | null }> {
  const classes = options.classes ?? 5;
  const backbone = buildVariant(tf, model, { includeTop: false });
  const full = attachHead(tf, backbone, { classes, dropout: 0, name: 'bench' });
  initializeWeights(tf, full, 1);
  const frozen = new Set(backbone.layers.slice(0, freeze).map((l) => l.name));
  applyTrainability(full, frozen, 'frozen');
  const cut = cutModel(tf, full, frozen);
  const nchwc = options.lowering === 'gather' ? null : await nchwcTarget(options.batch ?? 16);
  const graph = compileTrainStep(cut.tail, { optimizer: 'adam', momentum: 0, nesterov: false, labelSmoothing: 0, weightDecay: 0, nchwc });
  const weights = graph.trainable.map((s) => cut.tail.trainableWeights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array);
  const states = graph.state.map((s) => cut.tail.weights.find((w) => w.originalName === s.variable)!.read().dataSync() as Float32Array);
  return { graph, weights, states, boundaryShapes: cut.boundaryShapes, flopsPerImage: forwardFlops(cut.tail), frozen: cut.frozen };
}

/**
 * A tail's train step held open for repeated timing (as training runs it: `chunk` steps per ONNX Runtime run, the
 * Loop form above 1), so that its timings can alternate with a peer's.
 */
export async function openStepTimer(tf: Tf, model: string, freeze: number, options: { batch?: number; threads?: number } = {}): Promise<{ chunk: number; boundaryShapes: number[][]; stepFlops: number; msPerStep: (steps: number) => Promise<number>; frozenMsPerBatch: (batches: number) => Promise<number>; close: () => Promise<void> }> {
  const batch = options.batch ?? 16;
  const { graph, weights, boundaryShapes, flopsPerImage, frozen } = await tailGraph(tf, model, freeze, { batch });
  // The frozen part as training runs it on ONNX Runtime (exported, BatchNorm folded), for the uncached step.
  const { exportOnnx } = await import('../src/onnx/export.js');
  const { OnnxSession } = await import('../src/onnx/runtime.js');
  const frozenSession = frozen ? await OnnxSession.open(exportOnnx(frozen), { threads: options.threads ?? availableParallelism() }) : null;
  const pixels = Float32Array.from({ length: batch * 224 * 224 * 3 }, (_, i) => Math.sin(i * 0.11));
  if (frozenSession) await frozenSession.run([{ data: pixels, shape: [batch, 224, 224, 3] }]);
  const chunk = chunkSize(carriedBytes(graph), boundaryShapes, batch);
  const trainer = await StepSession.open(graph, weights, { threads: options.threads ?? availableParallelism(), loop: chunk > 1 });
  const boundary = boundaryShapes.map((shape) => Float32Array.from({ length: batch * shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.max(0, Math.sin(i * 0.37))));
  const one = { boundary: boundary.map((data, i) => ({ data, shape: [batch, ...boundaryShapes[i]!] })), labels: Int32Array.from({ length: batch }, (_, i) => i % 5), sampleWeights: new Float32Array(batch).fill(1), masks: [], lr: 1e-4 };
  const runOf = Array.from({ length: chunk }, () => one);
  await trainer.steps(runOf);
  return {
    chunk,
    boundaryShapes,
    stepFlops: 3 * batch * flopsPerImage,
    msPerStep: async (steps) => {
      const runs = Math.max(1, Math.round(steps / chunk));
      const t0 = performance.now();
      for (let r = 0; r < runs; r++) await trainer.steps(runOf);
      return (performance.now() - t0) / (runs * chunk);
    },
    frozenMsPerBatch: async (batches) => {
      if (!frozenSession) return 0;
      const t0 = performance.now();
      for (let r = 0; r < batches; r++) await frozenSession.run([{ data: pixels, shape: [batch, 224, 224, 3] }]);
      return (performance.now() - t0) / batches;
    },
    close: async () => {
      await trainer.close();
      await frozenSession?.close();
    },
  };
}

export async function profileStep(tf: Tf, model: string, freeze: number, options: { batch?: number; steps?: number; profile?: boolean; threads?: number; chunk?: number; lowering?: 'nchwc' | 'gather' } = {}): Promise<StepProfile> {
  const batch = options.batch ?? 16;
  const { ort } = await loadOrt();
  if (!ort) throw new Error('onnxruntime-node does not load');
  const { graph, weights, boundaryShapes, flopsPerImage } = await tailGraph(tf, model, freeze, { batch, ...(options.lowering ? { lowering: options.lowering } : {}) });
  const lowering = graph.nchwcLayers.length > 0 ? 'nchwc' : 'gather';
  const prefix = `/tmp/tl-step-profile-${process.pid}`;
  const session = await ort.InferenceSession.create(graph.bytes, { intraOpNumThreads: options.threads ?? availableParallelism(), interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'], ...(options.profile ? { enableProfiling: true, profileFilePrefix: prefix } : {}) });
  const T = (data: Float32Array | BigInt64Array, shape: number[]) => new ort.Tensor(data instanceof BigInt64Array ? 'int64' : 'float32', data, shape);
  let w = graph.trainable.map((s, i) => T(weights[i]!, s.shape));
  let slots = graph.trainable.map((s) => s.slots.map(() => T(new Float32Array(s.shape.reduce((a, b) => a * b, 1)), s.shape)));
  const boundary = boundaryShapes.map((shape) => Float32Array.from({ length: batch * shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.max(0, Math.sin(i * 0.37))));
  const step = async (k: number) => {
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {
      [graph.inputs.labels]: T(BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 5)), [batch]),
      [graph.inputs.sampleWeights]: T(new Float32Array(batch).fill(1), [batch]),
      [graph.inputs.lr]: T(Float32Array.of(1e-4), []),
      [graph.inputs.step]: T(Float32Array.of(k), []),
    };
    graph.boundary.forEach((name, i) => (feeds[name] = T(boundary[i]!, [batch, ...boundaryShapes[i]!])));
    graph.trainable.forEach((s, i) => {
      feeds[s.input] = w[i]!;
      s.slots.forEach((slot, j) => (feeds[slot.input] = slots[i]![j]!));
    });
    const out = await session.run(feeds);
    w = graph.trainable.map((s) => out[s.output]!);
    slots = graph.trainable.map((s) => s.slots.map((slot) => out[slot.output]!));
  };
  if ((options.chunk ?? 1) > 1) {
    // K steps per run, as the onnx trainer runs them (the Loop form).
    const K = options.chunk!;
    await session.release();
    const trainer = await StepSession.open(graph, weights, { threads: options.threads ?? availableParallelism(), loop: true });
    const one = { boundary: boundary.map((data, i) => ({ data, shape: [batch, ...boundaryShapes[i]!] })), labels: Int32Array.from({ length: batch }, (_, i) => i % 5), sampleWeights: new Float32Array(batch).fill(1), masks: [], lr: 1e-4 };
    const chunk = Array.from({ length: K }, () => one);
    await trainer.steps(chunk);
    const runs = Math.max(1, Math.round((options.steps ?? 8) / K));
    const t0 = performance.now();
    for (let r = 0; r < runs; r++) await trainer.steps(chunk);
    const msPerStep = (performance.now() - t0) / (runs * K);
    await trainer.close();
    return { model, freeze, batch, msPerStep, nodes: 0, stepFlops: 3 * batch * flopsPerImage, ops: [], nodes_: [], chunk: K, boundaryShapes, lowering, carriedBytes: carriedBytes(graph) };
  }
  await step(1);
  await step(2);
  const steps = options.steps ?? 8;
  const t0 = performance.now();
  for (let k = 0; k < steps; k++) await step(k + 3);
  const msPerStep = (performance.now() - t0) / steps;
  const nodes = (await import('../src/onnx/graph.js')).onnx.ModelProto.decode(graph.bytes).graph!.node!.length;
  let ops: StepProfile['ops'] = [];
  let slow: StepProfile['nodes_'] = [];
  if (options.profile) {
    session.endProfiling();
    const { readdirSync } = await import('node:fs');
    const file = readdirSync('/tmp').map((f) => `/tmp/${f}`).find((f) => f.startsWith(prefix));
    if (!file) throw new Error('ONNX Runtime wrote no profile');
    const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; ts: number; args?: { op_name?: string; output_size?: string; activation_size?: string; output_type_shape?: unknown; input_type_shape?: unknown } }[];
    rmSync(file, { force: true });
    const byOp = new Map<string, { us: number; calls: number; bytes: number }>();
    const byNode = new Map<string, { op: string; shape: string; us: number }>();
    // The two warm-up runs first touch every buffer of the arena: only the timed runs count.
    const runsEnd = events.filter((e) => e.name === 'model_run').map((e) => e.ts + e.dur).sort((a, b) => a - b);
    const after = runsEnd[1] ?? 0;
    for (const e of events) {
      if (e.ts < after) continue;
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name) continue;
      const r = byOp.get(e.args.op_name) ?? { us: 0, calls: 0, bytes: 0 };
      r.us += e.dur;
      r.calls += 1;
      r.bytes += Number(e.args.output_size ?? 0) + Number(e.args.activation_size ?? 0);
      byOp.set(e.args.op_name, r);
      const n = byNode.get(e.name) ?? { op: e.args.op_name, shape: `${JSON.stringify(e.args.input_type_shape)} -> ${JSON.stringify(e.args.output_type_shape)}`, us: 0 };
      n.us += e.dur;
      byNode.set(e.name, n);
    }
    const runs = steps;
    const total = [...byOp.values()].reduce((a, r) => a + r.us, 0);
    slow = [...byNode.values()].map((n) => ({ op: n.op, shape: n.shape.replace(/"float":|"int64":|[{}]/g, ''), ms: n.us / 1000 / runs })).sort((a, b) => b.ms - a.ms).slice(0, 20);
    ops = [...byOp.entries()].map(([op, r]) => ({ op, ms: r.us / 1000 / runs, share: r.us / total, calls: r.calls / runs, bytes: r.bytes / runs })).sort((a, b) => b.ms - a.ms);
  }
  await session.release();
  return { model, freeze, batch, msPerStep, nodes, stepFlops: 3 * batch * flopsPerImage, ops, nodes_: slow, chunk: 1, boundaryShapes, lowering, carriedBytes: carriedBytes(graph) };
}

/** ONNX Runtime's MatMul with both operands fed at run time (as the train step's weights are): best GFLOP/s per shape. */
export async function gemmPeak(shapes: [number, number, number][], options: { runs?: number; threads?: number } = {}): Promise<{ shape: [number, number, number]; gflops: number }[]> {
  const { ort } = await loadOrt();
  if (!ort) throw new Error('onnxruntime-node does not load');
  const { onnx, FLOAT } = await import('../src/onnx/graph.js');
  const out: { shape: [number, number, number]; gflops: number }[] = [];
  for (const [m, k, n] of shapes) {
    const info = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
    const proto = onnx.ModelProto.create({
      irVersion: 7,
      opsetImport: [{ domain: '', version: 13 }],
      graph: { name: 'gemm', node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }], input: [info('a', [m, k]), info('b', [k, n])], output: [info('c', [m, n])] },
    });
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(proto).finish(), { intraOpNumThreads: options.threads ?? availableParallelism(), interOpNumThreads: 1, executionProviders: ['cpu'] });
    const feeds = { a: new ort.Tensor('float32', Float32Array.from({ length: m * k }, (_, i) => Math.sin(i)), [m, k]), b: new ort.Tensor('float32', Float32Array.from({ length: k * n }, (_, i) => Math.cos(i)), [k, n]) };
    await session.run(feeds);
    let best = Infinity;
    for (let r = 0; r < (options.runs ?? 10); r++) {
      const t = performance.now();
      await session.run(feeds);
      best = Math.min(best, performance.now() - t);
    }
    await session.release();
    out.push({ shape: [m, k, n], gflops: (2 * m * k * n) / (best / 1000) / 1e9 });
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string', default: 'mobilenet_v2' }, freeze: { type: 'string', default: '100' }, steps: { type: 'string', default: '8' }, profile: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, nodes: { type: 'boolean', default: false }, chunk: { type: 'string', default: '1' }, lowering: { type: 'string' } } });
  const { tf } = await loadBackend({ choice: 'wasm' });
  const given = values.lowering;
  if (given !== undefined && given !== 'nchwc' && given !== 'gather') throw new Error(`--lowering ${given}: nchwc or gather`);
  const lowering = given === undefined ? {} : { lowering: given as 'nchwc' | 'gather' };
  const r = await profileStep(tf, values.model, Number(values.freeze), { steps: Number(values.steps), profile: values.profile, chunk: Number(values.chunk), ...lowering });
  if (values.json) return void process.stdout.write(`${JSON.stringify(r)}\n`);
  process.stdout.write(`${r.model} --freeze ${r.freeze}, batch ${r.batch}, ${r.lowering}: ${r.msPerStep.toFixed(1)} ms per step (${((1000 * r.batch) / r.msPerStep).toFixed(1)} img/s, ${(r.stepFlops / r.msPerStep / 1e6).toFixed(0)} GFLOP/s), ${r.nodes} nodes\n`);
  if (values.nodes) for (const n of r.nodes_) process.stdout.write(`${n.ms.toFixed(2).padStart(7)} ms ${n.op} ${n.shape}\n`);
  for (const o of r.ops.slice(0, 25)) process.stdout.write(`${o.op.padEnd(18)} ${o.ms.toFixed(2).padStart(8)} ms ${(100 * o.share).toFixed(1).padStart(5)}% ${o.calls.toFixed(0).padStart(5)} calls ${(o.bytes / 2 ** 20).toFixed(0).padStart(6)} MiB\n`);
}

if (process.argv[1]?.endsWith('step-profile.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
