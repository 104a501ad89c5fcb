// Assigns named weights to a built model, layer by layer, with shape checks.
import type { LayersModel, Tensor } from '../backend/index.js';
import { WeightsError } from '../errors.js';

/** Weights grouped by layer name, then by short weight name (`kernel`, `gamma`, `moving_mean`, ...). */
export type NamedWeights = Map<string, Map<string, Tensor>>;

/** `conv1/conv1/kernel:0` or `Conv1/kernel` -> { layer, weight }. */
export function splitWeightName(name: string): { layer: string; weight: string } {
  const parts = name.replace(/:\d+$/, '').split('/');
  const weight = parts.pop() ?? name;
  return { layer: parts[0] ?? '', weight };
}

/** Groups a flat `{ 'layer/weight': tensor }` map by layer. */
export function groupByLayer(flat: Record<string, Tensor>): NamedWeights {
  const out: NamedWeights = new Map();
  for (const [name, tensor] of Object.entries(flat)) {
    const { layer, weight } = splitWeightName(name);
    if (!out.has(layer)) out.set(layer, new Map());
    out.get(layer)!.set(weight, tensor);
  }
  return out;
}

export interface AssignReport {
  assigned: string[];
  /** Model layers with weights that the source did not have (e.g. a new head). */
  missing: string[];
  /** Source layers the model does not have (e.g. a pretrained top that was dropped). */
  unused: string[];
}

/**
 * Sets every weighted layer of `model` from `weights`, matching by layer name. A shape mismatch is an error
 * naming the layer and both shapes; layers the source lacks are an error unless listed in `allowMissing`.
 */
export function assignWeights(model: LayersModel, weights: NamedWeights, options: { allowMissing?: (layer: string) => boolean; source?: string } = {}): AssignReport {
  const report: AssignReport = { assigned: [], missing: [], unused: [] };
  const used = new Set<string>();
  const source = options.source ? ` in ${options.source}` : '';
  for (const layer of model.layers) {
    if (layer.weights.length === 0) continue;
    const found = weights.get(layer.name);
    if (found === undefined) {
      if (options.allowMissing?.(layer.name)) {
        report.missing.push(layer.name);
        continue;
      }
      throw new WeightsError(`No weights for layer '${layer.name}'${source}.`);
    }
    used.add(layer.name);
    const values = layer.weights.map((w) => {
      const short = splitWeightName(w.originalName).weight;
      const value = found.get(short);
      if (value === undefined) {
        throw new WeightsError(`Layer '${layer.name}'${source} has no weight '${short}' (it has: ${[...found.keys()].join(', ')}).`);
      }
      const expected = w.shape;
      if (expected.length !== value.shape.length || expected.some((d, i) => d !== value.shape[i])) {
        throw new WeightsError(`Shape mismatch for '${layer.name}/${short}'${source}: the model expects [${expected.join(', ')}], the weights have [${value.shape.join(', ')}].`);
      }
      return value;
    });
    layer.setWeights(values);
    report.assigned.push(layer.name);
  }
  for (const name of weights.keys()) if (!used.has(name)) report.unused.push(name);
  return report;
}

/** Disposes every tensor of a NamedWeights map. */
export function disposeWeights(weights: NamedWeights): void {
  for (const layer of weights.values()) for (const t of layer.values()) t.dispose();
}
