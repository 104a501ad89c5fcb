// Which training images an epoch shows, and how: the images themselves (augmented anew when --augment asks), or
// with --augment-views one cached view of each.
import type { ImageItem } from '../data/index.js';
import type { AugmentLevel } from '../data/modes.js';
import { allViews, epochViews } from '../data/views.js';
import type { RunOptions } from './types.js';

type ViewOptions = Pick<RunOptions, 'augment' | 'augmentViews' | 'seed'>;

/** Whether the run trains on cached augmented views (`--augment-views` with an augmentation level). */
export const usesViews = <T extends ViewOptions>(options: T): options is T & { augment: Exclude<AugmentLevel, 'none'> } => options.augmentViews > 0 && options.augment !== 'none';

/** The items of `train` whose frozen-part outputs the run caches before training: every view, or every image. */
export function cachedTrainingItems(options: ViewOptions, train: readonly ImageItem[]): ImageItem[] {
  return usesViews(options) ? allViews(train, options.augment, options.augmentViews, options.seed) : [...train];
}

/** What pass `epoch` trains on: its items and the augmentation the loader applies to them (views carry their own). */
export function epochItems(options: ViewOptions, train: readonly ImageItem[], epoch: number): { items: ImageItem[]; augment: AugmentLevel } {
  if (usesViews(options)) return { items: epochViews(train, options.augment, options.augmentViews, options.seed, epoch), augment: 'none' };
  return { items: [...train], augment: options.augment };
}
