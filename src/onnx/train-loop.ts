// Several optimizer steps in one ONNX Runtime run: the compiled train step becomes the body of an ONNX Loop whose
// loop-carried values are the weights, the optimizer slots and the moving statistics. They stay inside ONNX Runtime
// from one step to the next; only the chunk's batches go in and the final values come out, once per chunk. (Each
// output of a run is copied into a new JavaScript buffer: for ResNet50's conv5, weights and Adam's two slots are
// 180 MB a step.)
import type { onnx as P } from 'onnx-proto';
import { FLOAT, INT64, onnx, OPSET } from './graph.js';
import type { TrainStepGraph } from './train-step.js';

const BOOL = 9;

export interface TrainLoopGraph {
  bytes: Uint8Array;
  /** int64 scalar: steps in this run (the chunk's length K). */
  trips: string;
  /** float scalar: the 1-based optimizer step of the chunk's first batch. */
  firstStep: string;
  /** Each per-step input of the step graph (boundary, masks, labels, sample weights, lr) -> its stacked input [K, ...]. */
  stacked: Record<string, string>;
  /** Each carried input of the step graph (weights, slots, states) -> the loop input holding its value before the chunk. */
  initial: Record<string, string>;
  /** Each carried output of the step graph -> the loop output holding its value after the chunk. */
  final: Record<string, string>;
  /** Per-step outputs [K]: loss, number correct, sum of the updated weights. */
  outputs: { loss: string; correct: string; weightsSum: string };
}

/** Wraps a compiled step (compiled without gradient outputs) into a Loop over a chunk of batches. */
export function compileTrainLoop(step: TrainStepGraph): TrainLoopGraph {
  if (step.trainable.some((s) => s.gradient !== null)) throw new Error('compileTrainLoop: the step graph emits gradients');
  const model = onnx.ModelProto.decode(step.bytes);
  const g = model.graph!;
  const typeOf = new Map((g.input ?? []).map((v) => [v.name!, v.type!]));
  const carried: { input: string; output: string }[] = [
    ...step.trainable.flatMap((spec) => [{ input: spec.input, output: spec.output }, ...spec.slots.map((s) => ({ input: s.input, output: s.output }))]),
    ...step.state.map((s) => ({ input: s.input, output: s.output })),
  ];
  const perStep = [...step.boundary, ...step.masks.map((m) => m.input), step.inputs.labels, step.inputs.sampleWeights, step.inputs.lr, ...(step.inputs.targets ? [step.inputs.targets] : [])];
  const stacked = Object.fromEntries(perStep.map((name) => [name, `${name}__chunk`]));
  const initial = Object.fromEntries(carried.map((c) => [c.input, `${c.input}__initial`]));
  const final = Object.fromEntries(carried.map((c) => [c.output, `${c.output}__final`]));
  const iter = 'loop__iteration';
  const trips = 'loop__trips';
  const firstStep = 'loop__first_step';

  // The body: each step's slice of the stacked inputs, the step number, the step graph itself.
  const slices: P.INodeProto[] = perStep.map((name) => ({ opType: 'Gather', input: [stacked[name]!, iter], output: [name], name: `${name}__slice`, attribute: [{ name: 'axis', i: 0, type: onnx.AttributeProto.AttributeType.INT }] }));
  const stepNumber: P.INodeProto[] = [
    { opType: 'Cast', input: [iter], output: ['loop__iteration_float'], name: 'loop__cast', attribute: [{ name: 'to', i: FLOAT, type: onnx.AttributeProto.AttributeType.INT }] },
    { opType: 'Add', input: [firstStep, 'loop__iteration_float'], output: [step.inputs.step], name: 'loop__step' },
    { opType: 'Identity', input: ['loop__cond_in'], output: ['loop__cond_out'], name: 'loop__cond' },
  ];
  const scalar = (name: string, elemType: number): P.IValueInfoProto => ({ name, type: { tensorType: { elemType, shape: { dim: [] } } } });
  const outputType = new Map((g.output ?? []).map((v) => [v.name!, v.type!]));
  const body: P.IGraphProto = {
    name: 'train_step_body',
    node: [...slices, ...stepNumber, ...(g.node ?? [])],
    initializer: g.initializer ?? [],
    input: [scalar(iter, INT64), scalar('loop__cond_in', BOOL), ...carried.map((c) => ({ name: c.input, type: typeOf.get(c.input)! }))],
    output: [scalar('loop__cond_out', BOOL), ...carried.map((c) => ({ name: c.output, type: outputType.get(c.output)! })), ...[step.outputs.loss, step.outputs.correct, step.outputs.weightsSum].map((n) => scalar(n, FLOAT))],
  };

  const stackedType = (name: string): P.ITypeProto => {
    const t = typeOf.get(name)!.tensorType!;
    return { tensorType: { elemType: t.elemType!, shape: { dim: [{ dimParam: 'K' }, ...(t.shape?.dim ?? [])] } } };
  };
  const perStepOut = { loss: 'loss__steps', correct: 'correct__steps', weightsSum: 'weights_sum__steps' };
  const vector = (name: string): P.IValueInfoProto => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'K' }] } } } });
  const outer: P.IGraphProto = {
    name: `${g.name}_loop`,
    node: [{
      opType: 'Loop',
      name: 'train_steps',
      input: [trips, '', ...carried.map((c) => initial[c.input]!)],
      output: [...carried.map((c) => final[c.output]!), perStepOut.loss, perStepOut.correct, perStepOut.weightsSum],
      attribute: [{ name: 'body', g: body, type: onnx.AttributeProto.AttributeType.GRAPH }],
    }],
    input: [scalar(trips, INT64), scalar(firstStep, FLOAT), ...perStep.map((name) => ({ name: stacked[name]!, type: stackedType(name) })), ...carried.map((c) => ({ name: initial[c.input]!, type: typeOf.get(c.input)! }))],
    output: [...carried.map((c) => ({ name: final[c.output]!, type: outputType.get(c.output)! })), vector(perStepOut.loss), vector(perStepOut.correct), vector(perStepOut.weightsSum)],
  };
  // The body's operator domains (ONNX Runtime's NCHWc kernels) are imported by the model that holds it.
  const proto = onnx.ModelProto.create({ irVersion: model.irVersion ?? 7, producerName: 'tl', opsetImport: model.opsetImport?.length ? model.opsetImport : [{ domain: '', version: OPSET }], graph: outer });
  return { bytes: onnx.ModelProto.encode(proto).finish(), trips, firstStep, stacked, initial, final, outputs: perStepOut };
}
