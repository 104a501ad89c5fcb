// Option groups shared by several commands (dataset splitting and decoding), as flags and as a schema.
import type { Command } from 'commander';
import { DATA_OPTIONS } from '../options/shared.js';
import { schemaOf } from '../util/options.js';
import { addOptions } from './common.js';

/** Adds the dataset options: split fractions, seed, resize mode, pixel limit. */
export function dataOptions(cmd: Command): Command {
  return addOptions(cmd, DATA_OPTIONS);
}

export const dataSchema = schemaOf(DATA_OPTIONS);
