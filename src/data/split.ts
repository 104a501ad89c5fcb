// Stratified, seeded, deterministic train/val/test split by a hash of each file's relative path.
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import { SPLITS, type ImageItem, type SplitName } from './scan.js';

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

/** `items` in their seeded order (by `rank`). */
function seededOrder(items: readonly ImageItem[], seed: number): ImageItem[] {
  return items.map((item) => ({ item, key: rank(seed, item.rel) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((o) => o.item);
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
  if (items.some((i) => i.labels)) {
    Object.assign(out, iterativeSplit([...byClass.values()].flat(), fractions, options.seed));
    return out;
  }
  for (const group of byClass.values()) {
    const ordered = seededOrder(group, options.seed);
    const n = ordered.length;
    let nTest = Math.round(n * fractions.test);
    let nVal = Math.round(n * fractions.val);
    // Keep at least one training image per class.
    while (nTest + nVal >= n && (nTest > 0 || nVal > 0)) {
      if (nVal >= nTest && nVal > 0) nVal--;
      else nTest--;
    }
    ordered.forEach((item, i) => {
      out[item.rel] = i < nTest ? 'test' : i < nTest + nVal ? 'val' : 'train';
    });
  }
  return out;
}

/**
 * Multi-label: iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011). The label with the fewest images
 * still to place goes first; each of its images (in the seeded order) goes to the split that most lacks that label,
 * then the one that most lacks images; ties go to train, then val. Rare labels so reach val and test where they can.
 */
function iterativeSplit(items: readonly ImageItem[], fractions: { val: number; test: number }, seed: number): SplitMap {
  const out: SplitMap = {};
  const share = [1 - fractions.val - fractions.test, fractions.val, fractions.test];
  const ordered = seededOrder(items, seed);
  const classes = Math.max(0, ...ordered.flatMap((i) => i.labels!)) + 1;
  const perLabel = new Array<number>(classes).fill(0);
  for (const item of ordered) for (const l of item.labels!) perLabel[l]!++;
  // What each split still wants, of images and of each label.
  const wantImages = share.map((r) => r * ordered.length);
  const wantLabel = share.map((r) => perLabel.map((n) => r * n));
  const left = new Set(ordered);
  const remaining = [...perLabel];
  const place = (item: ImageItem, j: number) => {
    out[item.rel] = SPLITS[j]!;
    left.delete(item);
    wantImages[j]!--;
    for (const l of item.labels!) {
      wantLabel[j]![l]!--;
      remaining[l]!--;
    }
  };
  while (left.size > 0) {
    let label = -1;
    for (let l = 0; l < classes; l++) if (remaining[l]! > 0 && (label < 0 || remaining[l]! < remaining[label]!)) label = l;
    if (label < 0) break;
    for (const item of ordered) {
      if (!left.has(item) || !item.labels!.includes(label)) continue;
      let best = 0;
      for (let j = 1; j < 3; j++) {
        if (share[j] === 0) continue;
        const a = wantLabel[j]![label]!;
        const b = wantLabel[best]![label]!;
        if (a > b || (a === b && wantImages[j]! > wantImages[best]!)) best = j;
      }
      place(item, best);
    }
  }
  return out;
}
