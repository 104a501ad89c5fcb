// Label suspects: confident learning on out-of-fold probabilities, checked by hand on a small case, and end to end on
// real images whose labels were flipped.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { foldsOf } from '../../src/audit/suspects.js';
import { confidentLearning } from '../../src/metrics/confident-learning.js';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import type { ImageItem } from '../../src/data/index.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
});

describe('confident learning', () => {
  it('thresholds, the confident joint and the issues as computed by hand', () => {
    // Rows: [p(a), p(b)], given labels.
    const probs = Float32Array.from([0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 0.45, 0.55]);
    const labels = Int32Array.of(0, 0, 0, 1, 1, 1);
    const { thresholds, joint, issues } = confidentLearning(probs, labels, 2);
    // t_a = mean p(a) over rows labelled a = (0.9 + 0.8 + 0.3) / 3; t_b = (0.8 + 0.4 + 0.55) / 3.
    expect(thresholds[0]).toBeCloseTo(2 / 3, 6);
    expect(thresholds[1]).toBeCloseTo(1.75 / 3, 6);
    // Row 2 (given a): p(b) 0.7 >= t_b, p(a) 0.3 < t_a: counts toward b. Row 4 (given b): p(a) 0.6 < t_a, p(b) 0.4 < t_b:
    // counts nowhere. Row 5 (given b): p(b) 0.55 < t_b (0.583), p(a) 0.45 < t_a: nowhere.
    expect(joint).toEqual([[2, 1], [0, 1]]);
    expect(issues).toEqual([{ row: 2, likely: 1 }]);
  });

  it('folds are dealt per class from a seeded order: balanced, repeatable, another seed another deal', () => {
    const items = Array.from({ length: 30 }, (_, i) => ({ rel: `c${i % 3}/${i}.png`, label: i % 3 }) as ImageItem);
    const folds = foldsOf(items, 5, 1);
    for (const label of [0, 1, 2]) {
      const counts = [0, 1, 2, 3, 4].map((f) => items.filter((it, i) => it.label === label && folds[i] === f).length);
      expect(counts).toEqual([2, 2, 2, 2, 2]);
    }
    expect(foldsOf(items, 5, 1)).toEqual(folds);
    expect(foldsOf(items, 5, 2)).not.toEqual(folds);
  });
});

describe('tl data --suspects', () => {
  it('finds every flipped label with its true class, worst first, among few others', async () => {
    const data = tempDir();
    await makeColourDataset(data, 3, 12, 32);
    // Three labels flipped through a CSV file over the class folders.
    const flipped = new Map([['class0/img1.png', 'class1'], ['class1/img2.png', 'class2'], ['class2/img3.png', 'class0']]);
    const rows = readdirSync(data).flatMap((cls) => readdirSync(join(data, cls)).map((f) => `${cls}/${f},${flipped.get(`${cls}/${f}`) ?? cls}`));
    const labels = join(tempDir(), 'labels.csv');
    writeFileSync(labels, `path,label\n${rows.join('\n')}\n`);
    const before = tf.memory().numTensors;
    const r = await runTl(['data', data, '--labels', labels, '--suspects', '--input-size', '64', '--workers', '1', '--json'], { TL_HOME: tempDir() });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = (JSON.parse(r.stdout) as { suspects: { suspects: { rel: string; given: string; likely: string; givenProbability: number }[]; images: number; folds: number } }).suspects;
    expect(result.images).toBe(36);
    expect(result.folds).toBe(5);
    // Recall 1 and precision at least a half (a noisy colour image may look like another colour to a linear probe).
    for (const rel of flipped.keys()) expect(result.suspects.find((s) => s.rel === rel)?.likely, rel).toBe(rel.split('/')[0]);
    expect(result.suspects.length).toBeLessThanOrEqual(2 * flipped.size);
    const p = result.suspects.map((s) => s.givenProbability);
    expect(p).toEqual([...p].sort((a, b) => a - b));
    expect(tf.memory().numTensors).toBe(before);
    const text = await runTl(['data', data, '--labels', labels, '--suspects', '--input-size', '64', '--workers', '1'], { TL_HOME: tempDir() });
    expect(text.stdout).toMatch(/label suspects \(confident learning, 5 folds .*\): \d of 36 images, worst first/);
    expect(text.stdout).toContain('class0/img1.png');
  });
});
