// Augmentation that keeps the cache (`--augment-views K`): every training image gets K augmented views, each drawn
// once with its own seed; the frozen part runs once over all of them and its outputs are cached; each epoch, every
// image is shown as one of its views, drawn anew per epoch. Epochs then cost what cached training costs.
import type { AugmentLevel } from './modes.js';
import type { ImageItem } from './scan.js';
import { hashString, mixSeed, prng } from '../util/random.js';

/** View `index` of `item`: its seed depends on the run's seed, the view and the image's path, not on the epoch. */
function view(item: ImageItem, index: number, level: Exclude<AugmentLevel, 'none'>, seed: number): ImageItem {
  return { ...item, view: { index, level, seed: mixSeed(seed, 13, index, hashString(item.rel)) } };
}

/** Every view of every item: what the frozen part runs over once. */
export function allViews(items: readonly ImageItem[], level: Exclude<AugmentLevel, 'none'>, views: number, seed: number): ImageItem[] {
  return items.flatMap((item) => Array.from({ length: views }, (_, v) => view(item, v, level, seed)));
}

/** One view of each item for `epoch` (in the items' order), drawn by a seeded hash of the epoch and the path. */
export function epochViews(items: readonly ImageItem[], level: Exclude<AugmentLevel, 'none'>, views: number, seed: number, epoch: number): ImageItem[] {
  return items.map((item) => view(item, Math.floor(prng(mixSeed(seed, epoch, 17, hashString(item.rel)))() * views), level, seed));
}
