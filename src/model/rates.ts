// Discriminative learning rates (`--lr-decay-per-block`): a rate per block of the backbone that decays toward the
// input, as timm's layer-wise decay does: the head trains at the rate, the backbone's last block at rate x decay, the
// one before at rate x decay^2, and so on. Blocks are the backbone's block boundaries (depths.ts).
import type { LayersModel } from '../backend/index.js';
import { blockBoundaries } from './depths.js';

/**
 * Each trainable weight's multiple of the rate (by its `originalName`) in `full` (the backbone's layers first, then
 * the head's). A backbone layer in block b of B (0 nearest the input) gets decay^(B - b); the head's layers get 1.
 */
export function blockRateScales(full: LayersModel, backbone: LayersModel, decay: number): { scales: Record<string, number>; blocks: number } {
  const ends = blockBoundaries(backbone).map((d) => d.freeze);
  const blocks = ends.length;
  const scales: Record<string, number> = {};
  const inBackbone = new Set(backbone.layers.map((l) => l.name));
  full.layers.forEach((layer, i) => {
    if (!inBackbone.has(layer.name)) return;
    // Block b holds layers from ends[b-1] up to ends[b] - 1.
    const block = ends.findIndex((end) => i < end);
    const scale = decay ** (blocks - block);
    for (const w of layer.weights) scales[w.originalName] = scale;
  });
  return { scales, blocks };
}
