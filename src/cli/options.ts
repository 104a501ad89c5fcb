// Option groups shared by several commands (dataset splitting and decoding).
import type { Command } from 'commander';
import { z } from 'zod';
import { numeric } from './common.js';

/** Adds the dataset options: split fractions, seed, resize mode, pixel limit. */
export function dataOptions(cmd: Command): Command {
  return cmd
    .option('--val <fraction>', 'fraction of each class held out for validation', '0.15')
    .option('--test <fraction>', 'fraction of each class held out for testing', '0.15')
    .option('--seed <n>', 'seed of the split, shuffling and augmentation', '42')
    .option('--resize <mode>', 'center-crop | squash | pad', 'center-crop')
    .option('--max-pixels <n>', 'skip images with more pixels than this', '100000000');
}

export const dataSchema = z.object({
  val: numeric(z.number().min(0).max(0.9)),
  test: numeric(z.number().min(0).max(0.9)),
  seed: numeric(z.number().int()),
  resize: z.enum(['center-crop', 'squash', 'pad']),
  maxPixels: numeric(z.number().int().positive()),
});
