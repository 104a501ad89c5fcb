// The fine-tune report's label suspects: test images whose given label is probably wrong, by confident learning on
// the model's test probabilities. Labels of some test images are flipped through a CSV split column; those, and only
// those, are listed, worst first, in report.json, report.md and report.html.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { finetune } from '../../src/train/finetune.js';
import { finetuneOptions } from '../helpers/options.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
let tf: Tf;
let info: BackendInfo;
beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 14, 32));
});

describe('label suspects in the fine-tune report', () => {
  it('lists the test images whose labels were flipped, worst first, and no other', async () => {
    const rows: string[] = [];
    const flipped = new Map<string, string>();
    for (const cls of ['class0', 'class1', 'class2']) {
      readdirSync(join(data, cls)).sort().forEach((f, i) => {
        const split = i < 4 ? 'test' : i < 6 ? 'val' : 'train';
        // The first test image of class0 and class1 is labelled as the next class.
        const wrong = split === 'test' && i === 0 && cls !== 'class2';
        const label = wrong ? `class${Number(cls.slice(5)) + 1}` : cls;
        if (wrong) flipped.set(join(data, cls, f), label);
        rows.push(`${cls}/${f},${label},${split}`);
      });
    }
    const labels = join(tempDir(), 'labels.csv');
    writeFileSync(labels, `path,label,split\n${rows.join('\n')}\n`);
    const run = await finetune(tf, info, finetuneOptions(data, tempDir(), { labels, store: tempDir(), freeze: 'all', epochs: 6, batchSize: 8, lr: 0.02, calibrate: 'none', seed: 1 }));
    expect(run.metrics!.count).toBe(12);
    expect(new Set(run.suspects!.map((s) => s.path))).toEqual(new Set(flipped.keys()));
    for (const s of run.suspects!) {
      expect(s.given).toBe(flipped.get(s.path));
      expect(s.likely).toBe(s.path.split('/').at(-2));
      expect(s.likelyProbability).toBeGreaterThan(s.givenProbability);
    }
    expect(run.suspects!.map((s) => s.givenProbability)).toEqual([...run.suspects!.map((s) => s.givenProbability)].sort((a, b) => a - b));
    const report = JSON.parse(readFileSync(join(run.outDir, 'report.json'), 'utf8')) as { suspects: unknown };
    expect(report.suspects).toEqual(run.suspects);
    expect(readFileSync(join(run.outDir, 'report.md'), 'utf8')).toContain(`| ${run.suspects![0]!.path} | ${run.suspects![0]!.given} | ${run.suspects![0]!.likely} |`);
    expect((readFileSync(join(run.outDir, 'report.html'), 'utf8').match(/<figure class="mistake"><img[^>]*><figcaption>given/g) ?? []).length).toBe(2);
  }, 120_000);
});
