// Backbones for fine-tuning: any model `--model` resolves to (resolve.ts), cut after its last image feature map, with
// the classifier of a run tl wrote kept when asked.
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { WeightsError } from '../errors.js';
import type { PreprocessMode } from '../registry/index.js';
import { resolveModel, type ModelWant } from './resolve.js';

/** A backbone (no classifier) and what its inputs expect. */
export interface Backbone {
  model: LayersModel;
  /** Registry name, or the path/URL it came from. */
  name: string;
  preprocess: PreprocessMode;
  inputSize: number;
  /** The registry's default freeze point for this backbone, when it has one. */
  fineTuneFrom?: { layers: number; why: string };
  /**
   * With `keepHead`, a run tl wrote keeps its classifier: the whole model (backbone layers first, then the head's)
   * and its classes. The caller owns it; `model` is its backbone part.
   */
  withHead?: { model: LayersModel; classes: string[] };
}

/** What the resolver takes (weights required), and whether to keep the classifier of a run tl wrote (see Backbone.withHead). */
export type BackboneOptions = Omit<ModelWant, 'top' | 'weights'> & { weights: 'pretrained' | 'random'; keepHead?: boolean };

/** The layer feeding tl's head, or the last layer with a 4-D output for other models. */
function backboneOutput(model: LayersModel): SymbolicTensor {
  const head = model.layers.find((l) => l.name === 'head_pool');
  if (head) return head.inboundNodes[0]!.inputTensors[0]!;
  for (let i = model.layers.length - 1; i >= 0; i--) {
    const out = model.layers[i]!.output as SymbolicTensor | SymbolicTensor[];
    if (!Array.isArray(out) && out.shape.length === 4) return out;
  }
  throw new WeightsError(`Model '${model.name}' has no layer with a 4-D (image feature map) output to fine-tune from.`);
}

/** Resolves `--model` (a registry name, a model.json URL, a local path or a Keras .h5 file) as a backbone. */
export async function loadBackbone(tf: Tf, spec: string, options: BackboneOptions): Promise<Backbone> {
  const r = await resolveModel(tf, spec, { ...options, top: false });
  const base = { name: r.name, preprocess: r.preprocess, inputSize: r.inputSize, ...(r.fineTuneFrom ? { fineTuneFrom: r.fineTuneFrom } : {}) };
  if (r.headless) return { model: r.model, ...base };
  const loaded = r.model;
  let backbone: LayersModel;
  try {
    backbone = tf.model({ inputs: loaded.inputs, outputs: backboneOutput(loaded), name: `${loaded.name}_backbone` });
  } catch (err) {
    loaded.dispose();
    throw err;
  }
  const kept = new Set(backbone.layers.map((l) => l.name));
  const headLayers = loaded.layers.filter((l) => !kept.has(l.name));
  // A classifier tl wrote: the backbone's layers, then the head's, so Keras indices still count the backbone.
  const ordered = loaded.layers.slice(0, kept.size).every((l) => kept.has(l.name));
  if (options.keepHead && r.tl?.classes && headLayers.length > 0 && ordered) return { model: backbone, ...base, withHead: { model: loaded, classes: r.tl.classes } };
  // Layers past the backbone (the old classifier) are dropped: free their weights now.
  for (const layer of headLayers) layer.dispose();
  return { model: backbone, ...base };
}
