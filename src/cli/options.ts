// Option groups shared by several commands (dataset splitting and decoding), as flags and as a schema.
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { DATA_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addOptions } from './common.js';

/** Adds the dataset options: split fractions, seed, resize mode, pixel limit. */
export function dataOptions(cmd: Command): Command {
  return addOptions(cmd, DATA_OPTIONS);
}

export const dataSchema = schemaOf(DATA_OPTIONS);

/** Commands that read one label per image refuse `--multi-label` by name, rather than read the data another way. */
export function refuseMultiLabel(opts: { multiLabel?: boolean | undefined }, what: string): void {
  if (opts.multiLabel) throw new UsageError(`${what} reads one label per image; --multi-label is for tl finetune, lr-find, data, cache, eval and predict.`);
}
