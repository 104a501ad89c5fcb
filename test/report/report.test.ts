import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeMetrics } from '../../src/metrics/classification.js';
import { reportSchema, writeReports, type FinetuneReport } from '../../src/report/index.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
let report: FinetuneReport;

beforeAll(async () => {
  const classes = ['cat', 'dog', 'bird'];
  const paths = await Promise.all([0, 1, 2, 3].map(async (i) => {
    const p = join(dir, `img${i}.png`);
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 60 * i, g: 100, b: 200 } } }).png().toFile(p);
    return p;
  }));
  const probs = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.6, 0.3, 0.1, 0.2, 0.3, 0.5, 0.1, 0.1, 0.8, 0.5, 0.4, 0.1];
  const labels = [0, 1, 1, 2, 0, 2];
  const metrics = computeMetrics(probs, labels, classes, { paths: [...paths, join(dir, 'missing.png'), paths[0]!] });
  report = {
    schemaVersion: 1, kind: 'finetune', tlVersion: '0.0.0', createdAt: '2026-01-01T00:00:00.000Z', backend: 'wasm (simd, 1 thread)', model: 'mobilenet_v2.nsfwjs', classes,
    skipped: [{ path: 'bad.jpg', reason: 'truncated JPEG' }], seconds: 12.5, data: 'datasets/x', config: { epochs: 3, lr: 0.001, freeze: '100' },
    history: [1, 2, 3].map((epoch) => ({ epoch, loss: 1 / epoch, accuracy: 0.5 + epoch / 10, val_loss: 1.2 / epoch, val_accuracy: 0.4 + epoch / 10, lr: 0.001, seconds: 2, img_per_s: 20 })),
    phases: [{ name: 'train', first: 1, last: 3, frozenLayers: 100, lr: 0.001 }], best: { epoch: 3, monitor: 'val_loss', value: 0.4 }, stopReason: null, warnings: ['class \'rare\' has no test images: the test metrics do not cover it'], resumedFrom: null,
    calibration: { temperature: 1.7, fitted: 1.7, applied: true, reason: 'it lowers the validation log-loss', val: { logLossBefore: 0.61, logLossAfter: 0.52, eceBefore: 0.2, eceAfter: 0.05 }, test: { logLossBefore: 0.64, logLossAfter: 0.55, eceBefore: 0.21, eceAfter: 0.07 } },
    test: { loss: 0.5, accuracy: metrics.accuracy, count: 6 }, metrics, onnx: 'model.onnx', frozenLayers: 100, totalLayers: 154, trainableParams: 1000, boundaryLayers: ['block_10_project_BN'],
    cache: { enabled: true, hitRate: 0.66, spilled: 0 }, wasmHeapBytes: null, tensorsAfterEpoch: [10, 10, 10],
  };
  await writeReports(dir, report);
});

describe('reports', () => {
  it('report.json is the validated report and reads back through the schema', () => {
    const back = reportSchema.parse(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')));
    expect(back).toEqual(report);
    expect(() => reportSchema.parse({ ...report, schemaVersion: 2 })).toThrow();
    expect(() => reportSchema.parse({ ...report, kind: 'other' })).toThrow();
  });

  it('refuses to write a report that breaks the schema, and writes nothing', async () => {
    const other = tempDir();
    await expect(writeReports(other, { ...report, history: [{ epoch: 0 }] } as never)).rejects.toThrow();
    expect(existsSync(join(other, 'report.json'))).toBe(false);
  });

  it('report.md has the headline, the per-class table, the confusion matrix and the mistakes', () => {
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(md).toMatch(/^# Fine-tuning mobilenet_v2.nsfwjs on datasets\/x/);
    expect(md).toContain('| accuracy | 50.0% |');
    expect(md).toContain('| cat | 0.333 | 0.500 | 0.400 | 2 |');
    expect(md).toContain('| **bird** | 1 | 0 | 1 |');
    expect(md).toContain('## Most confident mistakes');
    expect(md).toContain("**Warning:** class 'rare' has no test images: the test metrics do not cover it.");
    expect(md).toContain('Calibrated with temperature 1.700 (fitted on the validation split, folded into the classifier): validation log-loss 0.6100 -> 0.5200, ECE 0.2000 -> 0.0500; test log-loss 0.6400 -> 0.5500, ECE 0.2100 -> 0.0700.');
    expect(md).toContain('bad.jpg: truncated JPEG');
  });

  it('report.html is one file with every chart as inline SVG, thumbnails inline, and no external resource', () => {
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    for (const id of ['loss-curve', 'accuracy-curve', 'confusion-matrix', 'f1-per-class', 'reliability']) expect(html).toMatch(new RegExp(`<figure id="chart-${id}" class="chart"><svg`));
    expect(html.match(/<img src="data:image\/jpeg;base64,/g)?.length).toBe(2);
    expect(html).toContain('unreadable');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(html).not.toContain('<script');
  });

  const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((b) => spawnSync('which', [b]).status === 0);
  it.skipIf(!chromium)('renders in headless Chromium with every chart drawn and no console errors', () => {
    const url = `file://${join(dir, 'report.html')}`;
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--user-data-dir=' + tempDir()];
    // Chromium writes dconf and other state under HOME and XDG folders: a home of the test's, not the user's.
    const home = tempDir();
    const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache'), XDG_DATA_HOME: join(home, '.local', 'share') };
    const run = spawnSync(chromium!, [...flags, '--enable-logging=stderr', '--v=0', '--virtual-time-budget=2000', '--dump-dom', url], { encoding: 'utf8', timeout: 60_000, env });
    expect(run.status, run.stderr).toBe(0);
    const dom = run.stdout;
    for (const id of ['loss-curve', 'accuracy-curve', 'confusion-matrix', 'f1-per-class', 'reliability']) expect(dom).toMatch(new RegExp(`id="chart-${id}"[^>]*><svg[^>]*class="marks"`));
    expect(run.stderr).not.toMatch(/CONSOLE|Uncaught|Failed to load resource/);
    const png = join(dir, 'report.png');
    execFileSync(chromium!, [...flags, '--hide-scrollbars', '--window-size=1200,2600', `--screenshot=${png}`, url], { stdio: 'ignore', timeout: 60_000, env });
    const head = readFileSync(png).subarray(0, 8);
    expect(head.toString('latin1', 1, 4)).toBe('PNG');
    if (process.env.TL_KEEP_SCREENSHOT) writeFileSync(process.env.TL_KEEP_SCREENSHOT, readFileSync(png));
  });
});
