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
    .option(...MAX_PIXELS_OPTION);
}

/** `--max-pixels`: images with more pixels are skipped (decompression bombs); every command that decodes images takes it. */
export const MAX_PIXELS_OPTION = ['--max-pixels <n>', 'skip images with more pixels than this (decompression bombs)', '100000000'] as const;
export const maxPixelsSchema = numeric(z.number().int().positive());

export const dataSchema = z.object({
  val: numeric(z.number().min(0).max(0.9)),
  test: numeric(z.number().min(0).max(0.9)),
  seed: numeric(z.number().int()),
  resize: z.enum(['center-crop', 'squash', 'pad']),
  maxPixels: maxPixelsSchema,
});
