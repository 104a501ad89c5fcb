// A fine-tune's options for a test: tl's own defaults (src/options/finetune.ts), except what keeps a test small, fast and
// exact, and what the test itself gives.
import type { FinetuneOptions } from '../../src/train/finetune.js';

/** Small and deterministic: 64 px squashed images, one worker, no augmentation, no dropout. */
const SMALL: Partial<FinetuneOptions> = { inputSize: 64, resize: 'squash', workers: 1, augment: 'none', dropout: 0 };

export function finetuneOptions(data: string, out: string, given: Partial<FinetuneOptions> = {}): FinetuneOptions {
  return { data, out, ...SMALL, ...given };
}
