// The files of a run folder, named once, with the schemas of the records tl reads back from one: split.json (which
// image went to which split) and labels.json. config.json's schema is the settings' own (options/finetune.ts); the
// model's metadata has its schema in registry/metadata.ts.
import { join } from 'node:path';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { readJsonFile } from '../util/json-file.js';
import { SPLITS } from './scan.js';

/** Each file of a run folder, relative to it. */
export const RUN_FILES = {
  config: 'config.json',
  split: 'split.json',
  labels: 'labels.json',
  metrics: 'metrics.csv',
  model: 'model',
  onnx: 'model.onnx',
  report: 'report.json',
  checkpoints: 'checkpoints',
  lastCheckpoint: join('checkpoints', 'last.ckpt'),
  bestCheckpoint: join('checkpoints', 'best.ckpt'),
} as const;

/** The path of one file of the run folder `dir`. */
export function runFile(dir: string, file: keyof typeof RUN_FILES): string {
  return join(dir, RUN_FILES[file]);
}

export const splitRecordSchema = z.object({
  root: z.string(),
  seed: z.number().optional(),
  val: z.number().optional(),
  test: z.number().optional(),
  layout: z.string().optional(),
  /** The CSV file the labels came from (`--labels`), and its columns. */
  labels: z.object({ file: z.string(), pathColumn: z.string().optional(), labelColumn: z.string().optional() }).optional(),
  /** Several labels per image (`--multi-label`), and the separator given for CSV cells. */
  multiLabel: z.object({ sep: z.string().optional() }).optional(),
  files: z.record(z.string(), z.enum(SPLITS)),
});
export type SplitRecord = z.infer<typeof splitRecordSchema>;

/** A run's split.json, checked; null when the run has none. A damaged one is an error naming it. */
export async function readSplitRecord(dir: string, suggestion: string): Promise<SplitRecord | null> {
  const path = runFile(dir, 'split');
  return readJsonFile(path, splitRecordSchema, () => new UsageError(`${path} is damaged (not the split record tl finetune writes).`, { suggestion }));
}
