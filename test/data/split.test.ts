import { describe, expect, it } from 'vitest';
import { assignSplits } from '../../src/data/split.js';
import type { ImageItem } from '../../src/data/scan.js';

function items(perClass: number[], prefix = ''): ImageItem[] {
  return perClass.flatMap((n, label) => Array.from({ length: n }, (_, i) => ({ path: `/d/${label}/${prefix}${i}.png`, rel: `c${label}/${prefix}${i}.png`, label, format: 'png' as const })));
}

describe('stratified split', () => {
  it('each class is within one image of the ideal fractions', () => {
    const data = items([100, 37, 9, 250, 3]);
    const map = assignSplits(data, { val: 0.15, test: 0.2, seed: 5 });
    [100, 37, 9, 250, 3].forEach((n, label) => {
      const count = (s: string) => data.filter((d) => d.label === label && map[d.rel] === s).length;
      expect(Math.abs(count('test') - n * 0.2)).toBeLessThanOrEqual(1);
      expect(Math.abs(count('val') - n * 0.15)).toBeLessThanOrEqual(1);
      expect(count('train')).toBeGreaterThan(0);
    });
  });

  it('is deterministic for a seed and changes with the seed', () => {
    const data = items([50, 50]);
    expect(assignSplits(data, { val: 0.2, test: 0.2, seed: 1 })).toEqual(assignSplits([...data].reverse(), { val: 0.2, test: 0.2, seed: 1 }));
    expect(assignSplits(data, { val: 0.2, test: 0.2, seed: 1 })).not.toEqual(assignSplits(data, { val: 0.2, test: 0.2, seed: 2 }));
  });

  it('adding files to other classes moves no existing file', () => {
    const before = assignSplits(items([40, 40]), { val: 0.2, test: 0.2, seed: 3 });
    const after = assignSplits([...items([40, 40]), ...items([0, 25, 30], 'new')], { val: 0.2, test: 0.2, seed: 3 });
    const moved = Object.keys(before).filter((rel) => rel.startsWith('c0/') && before[rel] !== after[rel]);
    expect(moved).toEqual([]);
  });

  it('honours a pre-split layout that has every split', () => {
    const data = items([6, 6]).map((d, i) => ({ ...d, split: (['train', 'val', 'test'] as const)[i % 3] }));
    const map = assignSplits(data, { val: 0.5, test: 0.3, seed: 1 });
    data.forEach((d) => expect(map[d.rel]).toBe(d.split));
  });

  it('holds a split the layout has no folder for out of its train folder, per class, and keeps the given ones', () => {
    // train/ + test/ and no val/: 20% of each class's train images become val; test/ stays test.
    const data = items([50, 20]).map((d, i) => ({ ...d, split: (i % 5 === 0 ? 'test' : 'train') as 'train' | 'test' }));
    const map = assignSplits(data, { val: 0.2, test: 0.3, seed: 4 });
    data.filter((d) => d.split === 'test').forEach((d) => expect(map[d.rel]).toBe('test'));
    for (const label of [0, 1]) {
      const train = data.filter((d) => d.label === label && d.split === 'train');
      const val = train.filter((d) => map[d.rel] === 'val').length;
      expect(Math.abs(val - train.length * 0.2)).toBeLessThanOrEqual(1);
      expect(train.filter((d) => map[d.rel] === 'test')).toEqual([]);
    }
    // train/ + val/ and no test/: with --test 0 nothing more is held out.
    const twoFolders = items([8, 8]).map((d, i) => ({ ...d, split: (i % 2 ? 'val' : 'train') as 'val' | 'train' }));
    const kept = assignSplits(twoFolders, { val: 0.2, test: 0, seed: 1 });
    twoFolders.forEach((d) => expect(kept[d.rel]).toBe(d.split));
  });
});
