// The report.json contract: one versioned zod schema per report kind, validated before anything is written.
import { z } from 'zod';

export const REPORT_SCHEMA_VERSION = 1;

const triple = z.object({ precision: z.number(), recall: z.number(), f1: z.number() });

export const metricsSchema = z.object({
  count: z.number().int().min(0),
  accuracy: z.number().min(0).max(1),
  top5: z.number().min(0).max(1).nullable(),
  logLoss: z.number().min(0),
  ece: z.number().min(0).max(1),
  reliability: z.array(z.object({ lower: z.number(), upper: z.number(), count: z.number().int(), confidence: z.number().nullable(), accuracy: z.number().nullable() })),
  perClass: z.array(z.object({ name: z.string(), precision: z.number(), recall: z.number(), f1: z.number(), support: z.number().int(), predicted: z.number().int() })),
  macro: triple,
  weighted: triple,
  confusion: z.array(z.array(z.number().int().min(0))),
  mistakes: z.array(z.object({ path: z.string(), true: z.string(), predicted: z.string(), probability: z.number() })),
});

/** Several labels per image: metrics at each label's threshold (src/metrics/multilabel.ts). */
export const multiLabelMetricsSchema = z.object({
  count: z.number().int().min(0),
  labels: z.array(z.object({ name: z.string(), threshold: z.number(), precision: z.number(), recall: z.number(), f1: z.number(), ap: z.number().nullable(), support: z.number().int(), predicted: z.number().int() })),
  micro: triple,
  macro: triple,
  mAP: z.number().nullable(),
  subsetAccuracy: z.number().min(0).max(1),
  hammingLoss: z.number().min(0).max(1),
  logLoss: z.number().min(0),
});

const skippedSchema = z.array(z.object({ path: z.string(), reason: z.string() }));

const common = {
  schemaVersion: z.literal(REPORT_SCHEMA_VERSION),
  tlVersion: z.string(),
  createdAt: z.string(),
  backend: z.string(),
  model: z.string(),
  classes: z.array(z.string()).min(1),
  skipped: skippedSchema,
  seconds: z.number().min(0),
};

export const epochRowSchema = z.object({
  epoch: z.number().int().min(1),
  loss: z.number(),
  accuracy: z.number(),
  val_loss: z.number().nullable(),
  val_accuracy: z.number().nullable(),
  lr: z.number(),
  seconds: z.number(),
  img_per_s: z.number(),
});

const calibrationEffect = z.object({ logLossBefore: z.number(), logLossAfter: z.number(), eceBefore: z.number(), eceAfter: z.number() });

/**
 * Temperature scaling's record: the temperature fitted on the validation split, whether it was applied (folded into
 * the classifier: `temperature` is then the fitted one, else 1) and why, and its effect on validation and test.
 */
const calibrationSchema = z.object({ temperature: z.number().positive(), fitted: z.number().positive(), applied: z.boolean(), reason: z.string(), val: calibrationEffect, test: calibrationEffect.nullable() });

/** `--freeze auto`'s record in a run's config: every block boundary's scores, the probed ones' results, the choice. */
export const freezeAutoSchema = z.object({
  depths: z.array(z.object({ freeze: z.number().int(), layer: z.string(), logme: z.number(), transrate: z.number(), probe: z.object({ valAccuracy: z.number(), valLoss: z.number(), seconds: z.number() }).nullable() })),
  chosen: z.number().int(),
  probeEpochs: z.number().int(),
  scoreSeconds: z.number(),
  seconds: z.number(),
});
export type FreezeAutoRecord = z.infer<typeof freezeAutoSchema>;

export const finetuneReportSchema = z.object({
  ...common,
  kind: z.literal('finetune'),
  data: z.string(),
  config: z.record(z.string(), z.unknown()),
  history: z.array(epochRowSchema),
  phases: z.array(z.object({ name: z.enum(['head', 'finetune', 'train']), first: z.number().int(), last: z.number().int(), frozenLayers: z.number().int(), lr: z.number(), engine: z.enum(['onnx', 'tfjs']).optional() })),
  best: z.object({ epoch: z.number().int(), monitor: z.string(), value: z.number() }).nullable(),
  stopReason: z.string().nullable(),
  /** What the user should know about the run's data or results (classes a split misses, imbalance). */
  warnings: z.array(z.string()),
  resumedFrom: z.object({ epoch: z.number().int(), batches: z.number().int() }).nullable(),
  /** Temperature scaling fitted on the validation split and folded into the classifier. */
  calibration: calibrationSchema.nullable(),
  /** Loss and full metrics on the held-out test split (null when there is none). */
  test: z.object({ loss: z.number(), accuracy: z.number(), count: z.number().int() }).nullable(),
  metrics: metricsSchema.nullable(),
  /** Several labels per image: the test metrics at each label's threshold (`metrics` is then null). */
  multiLabel: multiLabelMetricsSchema.nullable().optional(),
  /** Several labels per image: each label's threshold, tuned for F1 on the validation split. */
  thresholds: z.array(z.number()).nullable().optional(),
  /**
   * Test images whose given label is probably wrong: confident learning on the model's test probabilities, worst
   * first (absent from earlier reports; null with several labels per image or no test split).
   */
  suspects: z.array(z.object({ path: z.string(), given: z.string(), likely: z.string(), givenProbability: z.number(), likelyProbability: z.number() })).nullable().optional(),
  /**
   * Possible near-duplicates across splits: pairs of a training image and a validation or test image that look like
   * one picture resized, re-encoded or cropped (look-alikes can be listed); null when not checked (absent from earlier
   * reports).
   */
  nearDuplicates: z.array(z.object({ train: z.string(), heldOut: z.string(), split: z.enum(['val', 'test']), score: z.number() })).nullable().optional(),
  /** model.onnx's path, or why it was not written. */
  onnx: z.string(),
  frozenLayers: z.number().int(),
  totalLayers: z.number().int(),
  trainableParams: z.number().int(),
  boundaryLayers: z.array(z.string()),
  cache: z.object({ enabled: z.boolean(), hitRate: z.number(), spilled: z.number().int() }),
  /** The frozen part's outputs computed once before training: images and seconds (absent from earlier reports). */
  frozenPass: z.object({ images: z.number().int(), seconds: z.number() }).nullable().optional(),
  wasmHeapBytes: z.number().nullable(),
  tensorsAfterEpoch: z.array(z.number().int()),
});

export const evalReportSchema = z.object({
  ...common,
  kind: z.literal('eval'),
  run: z.string(),
  data: z.string(),
  split: z.enum(['test', 'val', 'train', 'all']),
  usedRunSplit: z.boolean(),
  metrics: metricsSchema.nullable(),
  multiLabel: multiLabelMetricsSchema.nullable().optional(),
  imagesPerSecond: z.number(),
});

/** Any report tl writes, told apart by `kind`. */
export const reportSchema = z.discriminatedUnion('kind', [finetuneReportSchema, evalReportSchema]);

export type FinetuneReport = z.infer<typeof finetuneReportSchema>;
export type EvalReport = z.infer<typeof evalReportSchema>;
export type Report = z.infer<typeof reportSchema>;
export type ReportMetrics = z.infer<typeof metricsSchema>;
export type ReportMultiLabel = z.infer<typeof multiLabelMetricsSchema>;
export type ReportSuspect = NonNullable<FinetuneReport['suspects']>[number];
/** Temperature scaling's result: the temperature and log-loss and ECE before and after (validation, test). */
export type Calibration = z.infer<typeof calibrationSchema>;
export type CalibrationEffect = z.infer<typeof calibrationEffect>;
