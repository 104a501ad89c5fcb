import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { finetune } from '../../src/train/finetune.js';
import type { FreezeAutoResult } from '../../src/train/freeze-auto.js';
import { expectLearned } from '../helpers/learned.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { collectNotices } from '../helpers/notices.js';
import { tempDir } from '../helpers/tmp.js';
import { finetuneOptions } from '../helpers/options.js';

let tf: Tf;
let info: BackendInfo;
const data = tempDir();
const store = tempDir();
beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(data, 3, 12, 32));
});

describe('--freeze auto', () => {
  it('scores the block boundaries, fine-tunes the best few briefly, trains at the one that validates best, and records the curve', async () => {
    const options = finetuneOptions(data, tempDir(), { store, freeze: 'auto', epochs: 3, batchSize: 6, lr: 3e-4, calibrate: 'none', val: 0.25, test: 0, seed: 4, engine: 'onnx' });
    const before = tf.memory().numTensors;
    const { result: r, notices } = await collectNotices(() => finetune(tf, info, options));
    // The probes are deleted after they are read: no advice to resume one of them.
    expect(notices.filter((n) => n.includes('--resume') && n.includes('freeze-auto'))).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
    const config = JSON.parse(readFileSync(join(r.outDir, 'config.json'), 'utf8')) as { freeze: number; freezeAuto: FreezeAutoResult };
    const fa = config.freezeAuto;
    // The record: every considered boundary with its scores; the probed ones with their validation results.
    expect(fa.depths.length).toBeGreaterThan(5);
    expect(fa.depths.every((d) => Number.isFinite(d.logme) && Number.isFinite(d.transrate))).toBe(true);
    const probed = fa.depths.filter((d) => d.probe !== null);
    expect(probed.length).toBeGreaterThanOrEqual(2);
    // The deepest LogME is always probed; the choice is the probe that validated best.
    const peak = fa.depths.reduce((a, b) => (b.logme > a.logme ? b : a));
    expect(peak.probe).not.toBeNull();
    const best = Math.max(...probed.map((d) => d.probe!.valAccuracy));
    const chosen = fa.depths.find((d) => d.freeze === fa.chosen)!;
    expect(chosen.probe!.valAccuracy).toBe(best);
    // The run trained there, and says so in its config (a resume reads the count) and report.
    expect(config.freeze).toBe(fa.chosen);
    expect(r.frozenLayers).toBe(fa.chosen);
    expectLearned(r.history, 3);
    expect(readFileSync(join(r.outDir, 'report.md'), 'utf8')).toContain(`Freeze depth chosen from the data (--freeze auto): ${fa.chosen} (after ${chosen.layer})`);
    expect(readFileSync(join(r.outDir, 'report.html'), 'utf8')).toContain('freeze-depth');
    // The short fine-tunes leave nothing behind in the run folder.
    expect(existsSync(join(r.outDir, 'freeze-auto'))).toBe(false);
  });
});
