// Which training images an epoch shows, and how: the images themselves (augmented anew when --augment asks), or
// with --augment-views one cached view of each.
import type { ImageItem } from '../data/index.js';
import type { AugmentLevel } from '../data/modes.js';
import { allViews, epochViews } from '../data/views.js';
import type { RunOptions } from './types.js';

type ViewOptions = Pick<RunOptions, 'augment' | 'augmentViews' | 'seed'>;

/** The items of `train` whose frozen-part outputs the run caches before training: every view, or every image. */
export function cachedTrainingItems(options: ViewOptions, train: readonly ImageItem[]): ImageItem[] {
  return options.augmentViews > 0 && options.augment !== 'none' ? allViews(train, options.augment, options.augmentViews, options.seed) : [...train];
}

/** What pass `epoch` trains on: its items and the augmentation the loader applies to them (views carry their own). */
export function epochItems(options: ViewOptions, train: readonly ImageItem[], epoch: number): { items: ImageItem[]; augment: AugmentLevel } {
  if (options.augmentViews > 0 && options.augment !== 'none') return { items: epochViews(train, options.augment, options.augmentViews, options.seed, epoch), augment: 'none' };
  return { items: [...train], augment: options.augment };
}
