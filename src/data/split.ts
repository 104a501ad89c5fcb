// Stratified, seeded, deterministic train/val/test split by a hash of each file's relative path.
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import type { ImageItem, SplitName } from './scan.js';

export interface SplitOptions {
  val: number;
  test: number;
  seed: number;
}

/** The split of every item, keyed by relative path. */
export type SplitMap = Record<string, SplitName>;

/** A file's position in the seeded order of its class: a hash of (seed, relative path). */
function rank(seed: number, rel: string): string {
  return createHash('sha256').update(`${seed}\0${rel}`).digest('hex');
}

/**
 * Assigns splits per class: files ordered by their seeded hash; the first round(n*test) go to test, the next
 * round(n*val) to val, the rest to train. A file's split depends only on its own class's files, so adding
 * files to other classes never moves it. A pre-split layout is kept as given, except that a split it has no folder
 * for (no val/ beside train/ and test/, say) is held out of its train folder the same way.
 */
export function assignSplits(items: readonly ImageItem[], options: SplitOptions): SplitMap {
  if (options.val < 0 || options.test < 0 || options.val + options.test >= 1) {
    throw new UsageError(`--val ${options.val} and --test ${options.test} must be >= 0 and sum to less than 1.`);
  }
  const out: SplitMap = {};
  const byClass = new Map<number, ImageItem[]>();
  const given = new Set(items.flatMap((i) => (i.split ? [i.split] : [])));
  const preSplit = given.size > 0;
  const fractions = { val: preSplit && given.has('val') ? 0 : options.val, test: preSplit && given.has('test') ? 0 : options.test };
  for (const item of items) {
    if (item.split && (item.split !== 'train' || (fractions.val === 0 && fractions.test === 0))) {
      out[item.rel] = item.split;
      continue;
    }
    if (!byClass.has(item.label)) byClass.set(item.label, []);
    byClass.get(item.label)!.push(item);
  }
  for (const group of byClass.values()) {
    const ordered = group.map((item) => ({ item, key: rank(options.seed, item.rel) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const n = ordered.length;
    let nTest = Math.round(n * fractions.test);
    let nVal = Math.round(n * fractions.val);
    // Keep at least one training image per class.
    while (nTest + nVal >= n && (nTest > 0 || nVal > 0)) {
      if (nVal >= nTest && nVal > 0) nVal--;
      else nTest--;
    }
    ordered.forEach(({ item }, i) => {
      out[item.rel] = i < nTest ? 'test' : i < nTest + nVal ? 'val' : 'train';
    });
  }
  return out;
}
