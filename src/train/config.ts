// The options a run saves in its config.json, as a schema: `--resume` reads them back from there.
import { z } from 'zod';

/** The serializable fine-tuning options (everything but callbacks and the store path). */
export const savedOptionsSchema = z.object({
  data: z.string(),
  model: z.string(),
  out: z.string(),
  freeze: z.union([z.number().int().min(0), z.string()]),
  epochs: z.number().int().min(1),
  headEpochs: z.number().int().min(0).optional(),
  batchSize: z.number().int().min(1),
  lr: z.union([z.number().positive(), z.literal('auto')]),
  finetuneLr: z.number().positive().optional(),
  optimizer: z.enum(['adam', 'sgd', 'rmsprop']).optional(),
  momentum: z.number().min(0).max(1).optional(),
  nesterov: z.boolean().optional(),
  schedule: z.enum(['constant', 'cosine', 'step']).optional(),
  warmupEpochs: z.number().min(0).optional(),
  stepEpochs: z.number().int().min(1).optional(),
  gamma: z.number().positive().optional(),
  weightDecay: z.number().min(0).optional(),
  labelSmoothing: z.number().min(0).max(1).optional(),
  classWeight: z.enum(['none', 'balanced']).optional(),
  accumulate: z.number().int().min(1),
  bn: z.enum(['frozen', 'train']),
  headHidden: z.number().int().min(1).optional(),
  dropout: z.number().min(0).max(0.95),
  augment: z.enum(['none', 'light', 'standard']),
  inputSize: z.number().int().optional(),
  preprocess: z.enum(['caffe', 'tf', 'torch', 'raw01', 'none']).optional(),
  val: z.number(),
  test: z.number(),
  seed: z.number().int(),
  resize: z.enum(['center-crop', 'squash', 'pad']),
  maxPixels: z.number(),
  weights: z.enum(['pretrained', 'random']),
  featureCacheBytes: z.number().int().min(0),
  workers: z.number().int().min(1),
  monitor: z.enum(['val_loss', 'val_accuracy']).optional(),
  patience: z.number().int().min(1).optional(),
});

export type SavedOptions = z.infer<typeof savedOptionsSchema>;
