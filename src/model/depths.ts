// Where a backbone can be cut at a block boundary: after a layer that ends a block, with that layer's output the only
// tensor crossing the cut (no skip connection over it). These are the freeze depths `--freeze auto` considers.
import type { LayersModel } from '../backend/index.js';
import { FAMILIES } from '../registry/index.js';

export interface Depth {
  /** Layers 0..freeze-1 are frozen (the `--freeze` count). */
  freeze: number;
  /** The last frozen layer, whose output is the boundary. */
  layer: string;
}

/** For each layer, the index of its last consumer (-1 when no layer consumes it: the model's output). */
function lastUse(model: LayersModel): number[] {
  const index = new Map(model.layers.map((l, i) => [l, i]));
  const last = model.layers.map(() => -1);
  model.layers.forEach((layer, i) => {
    for (const node of layer.inboundNodes) {
      for (const producer of node.inboundLayers) {
        const j = index.get(producer);
        if (j !== undefined) last[j] = Math.max(last[j]!, i);
      }
    }
  });
  return last;
}

/** The block-end pattern of the registry family whose pattern names the most of `model`'s layers, if any does. */
export function blockEndOf(model: LayersModel): RegExp | null {
  let best: { rx: RegExp; hits: number } | null = null;
  for (const family of FAMILIES) {
    const hits = model.layers.filter((l) => family.blockEnd.test(l.name)).length;
    if (hits > 0 && (best === null || hits > best.hits)) best = { rx: family.blockEnd, hits };
  }
  return best?.rx ?? null;
}

/**
 * The block boundaries of `model`, shallow to deep, ending with the whole backbone (the head alone trains). Without a
 * block-end pattern, every Add, Concatenate or pooling layer that the cut leaves alone on the boundary counts.
 */
export function blockBoundaries(model: LayersModel, blockEnd: RegExp | null = blockEndOf(model)): Depth[] {
  const last = lastUse(model);
  const count = model.layers.length;
  const out: Depth[] = [];
  for (let k = 1; k < count; k++) {
    const layer = model.layers[k - 1]!;
    const isEnd = blockEnd ? blockEnd.test(layer.name) : ['Add', 'Concatenate', 'MaxPooling2D', 'AveragePooling2D'].includes(layer.getClassName());
    if (!isEnd) continue;
    // Exactly one tensor crosses: layer k-1's output, and no earlier layer's is used at k or after.
    let crossing = 0;
    for (let j = 0; j < k; j++) if (last[j]! >= k) crossing += j === k - 1 ? 1 : 2;
    if (crossing === 1) out.push({ freeze: k, layer: layer.name });
  }
  out.push({ freeze: count, layer: model.layers[count - 1]!.name });
  return out;
}
