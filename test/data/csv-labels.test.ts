// Labels from a CSV file (--labels): the layout Kaggle, fastai and Keras's flow_from_dataframe use. Bad rows are listed
// with their line, never fatal; a CSV file that cannot be read, or lacks a column, is one clear error.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendInfo, Tf } from '../../src/backend/index.js';
import { LabelConflictError, openDataset, scanDataset } from '../../src/data/index.js';
import { DatasetError } from '../../src/errors.js';
import { evaluate } from '../../src/eval/index.js';
import { finetune } from '../../src/train/finetune.js';
import { runTl } from '../helpers/cli.js';
import { finetuneOptions } from '../helpers/options.js';
import { wasmWithColourData } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

/** class folders, and the same images flat under images/ (file names prefixed by class). */
const folders = tempDir();
const flat = tempDir();
let tf: Tf;
let info: BackendInfo;
beforeAll(async () => {
  ({ tf, info } = await wasmWithColourData(folders, 3, 10, 32));
  mkdirSync(join(flat, 'images'));
  for (const cls of readdirSync(folders)) for (const f of readdirSync(join(folders, cls))) copyFileSync(join(folders, cls, f), join(flat, 'images', `${cls}_${f}`));
});

/** Writes `rows` (a header first) as a CSV file in `dir` and returns its path. */
function csv(dir: string, rows: string[], name = 'labels.csv', eol = '\n'): string {
  const file = join(dir, name);
  writeFileSync(file, rows.join(eol) + eol);
  return file;
}

const flatRows = () => readdirSync(join(flat, 'images')).filter((f) => f.endsWith('.png')).sort().map((f) => `images/${f},${f.split('_')[0]}`);

describe('--labels FILE.csv', () => {
  it('a flat folder: without --labels the error says how to read its CSV file; with it, tl data summarises it as a folder', async () => {
    const labels = csv(flat, ['path,label', ...flatRows()]);
    const without = await runTl(['data', flat]);
    expect(without.exitCode).toBe(1);
    expect(without.stderr).toContain(`pass --labels ${labels}`);
    const r = await runTl(['data', flat, '--labels', labels, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { layout: string; layoutNotes: string[]; classes: { name: string; total: number }[]; skipped: unknown[] };
    expect(summary.layout).toBe('csv');
    expect(summary.classes.map((c) => [c.name, c.total])).toEqual([['class0', 10], ['class1', 10], ['class2', 10]]);
    expect(summary.layoutNotes).toEqual([`labels from ${labels}: 30 of 30 rows (path column 'path', label column 'label')`]);
    expect(summary.skipped).toEqual([]);
  });

  it('labels over the class folders themselves train exactly the run the folders train (same split, same metrics, same seed)', async () => {
    const rows = readdirSync(folders).filter((c) => c.startsWith('class')).flatMap((cls) => readdirSync(join(folders, cls)).map((f) => `${cls}/${f},${cls}`));
    // Column names of Kaggle's train.csv, a header row and a column order of its own.
    const labels = csv(tempDir(), ['target,image_id', ...rows.map((r) => r.split(',').reverse().join(','))]);
    const common = { store: tempDir(), freeze: 'all' as const, epochs: 2, batchSize: 6, lr: 0.01, calibrate: 'none' as const, val: 0.2, test: 0.2, seed: 3, engine: 'tfjs' as const };
    const byFolder = await finetune(tf, info, finetuneOptions(folders, tempDir(), common));
    const byCsv = await finetune(tf, info, finetuneOptions(folders, tempDir(), { ...common, labels }));
    expect(byCsv.history.map((h) => [h.loss, h.val_loss])).toEqual(byFolder.history.map((h) => [h.loss, h.val_loss]));
    expect(byCsv.metrics!.accuracy).toBe(byFolder.metrics!.accuracy);
    expect(JSON.parse(readFileSync(join(byCsv.outDir, 'split.json'), 'utf8')).files).toEqual(JSON.parse(readFileSync(join(byFolder.outDir, 'split.json'), 'utf8')).files);
    // tl eval reads the run's images through the same CSV file.
    const evaluated = await evaluate(tf, { run: byCsv.outDir, split: 'test', batchSize: 8, workers: 1, backend: 'wasm', store: common.store });
    expect(evaluated.usedRunSplit).toBe(true);
    expect(evaluated.metrics!.accuracy).toBeCloseTo(byCsv.metrics!.accuracy, 6);
  });

  it('a split column keeps the splits given; rows without one are split by --val and --test', async () => {
    const rows = flatRows().map((r, i) => `${r},${i < 6 ? 'test' : i < 9 ? 'valid' : ''}`);
    const labels = csv(tempDir(), ['path,label,split', ...rows]);
    const dataset = await openDataset(flat, { val: 0.2, test: 0.2, seed: 1, size: 32, labels: { file: labels } });
    const given = rows.slice(0, 9).map((r) => r.split(',')[0]!);
    expect(dataset.splits.test.map((i) => i.rel).sort()).toEqual(given.slice(0, 6).sort());
    expect(dataset.splits.val.map((i) => i.rel).sort()).toEqual(given.slice(6, 9).sort());
    expect(dataset.splits.train).toHaveLength(21);
  });
});

describe('bad CSV input', () => {
  it('unusable rows are listed with their line and skipped: unknown, missing, outside, empty label, bad split, a repeat', async () => {
    const dir = tempDir();
    const good = flatRows();
    writeFileSync(join(flat, 'images', 'notes.txt'), 'not an image');
    const labels = csv(dir, [
      'path,label,split', ...good.map((r) => `${r},`),
      'images/nope.png,class0,', 'images/notes.txt,class0,', '../outside.png,class1,', `${good[0]!.split(',')[0]},,`,
      `${good[1]!.split(',')[0]},class1,later`, `${good[2]},`,
    ]);
    const scan = await scanDataset(flat, { labels: { file: labels } });
    expect(scan.items).toHaveLength(30);
    const reasons = scan.skipped.map((s) => `${s.path.startsWith(flat) ? s.path.replace(flat, 'DATA') : s.path}: ${s.reason.replace(labels, 'CSV')}`);
    expect(reasons).toEqual(expect.arrayContaining([
      'DATA/images/nope.png: listed at CSV line 32 but missing',
      `${join(flat, '../outside.png')}: listed at CSV line 34: a path outside the dataset folder`,
      `DATA/${good[0]!.split(',')[0]}: listed at CSV line 35 with an empty label`,
      `DATA/${good[1]!.split(',')[0]}: listed at CSV line 36 with split 'later' (expected train, val or test)`,
      `DATA/${good[2]!.split(',')[0]}: listed again at CSV line 37 (first at line 4)`,
    ]));
    expect(reasons).toContain('DATA/images/notes.txt: listed at CSV line 33: not an image');
    expect(scan.skipped).toHaveLength(6);
  });

  it('quoting, a UTF-8 BOM and CRLF line ends are read as spreadsheets write them', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'odd, "names"'));
    const src = join(flat, 'images', readdirSync(join(flat, 'images')).find((f) => f.endsWith('.png'))!);
    for (let i = 0; i < 4; i++) copyFileSync(src, join(root, 'odd, "names"', `a${i}.png`));
    for (let i = 0; i < 4; i++) copyFileSync(join(flat, 'images', `class1_img${i}.png`), join(root, `b${i}.png`));
    const rows = [...[0, 1, 2, 3].map((i) => `"odd, ""names""/a${i}.png","first, class"`), ...[0, 1, 2, 3].map((i) => `b${i}.png,second`)];
    const file = join(root, 'labels.csv');
    writeFileSync(file, `\uFEFFpath,label\r\n${rows.join('\r\n')}\r\n`);
    const scan = await scanDataset(root, { labels: { file } });
    expect(scan.classes).toEqual(['first, class', 'second']);
    // Copies of one image under one label are duplicates, not conflicts.
    expect(scan.items).toHaveLength(8);
    expect(scan.skipped).toEqual([]);
  });

  it('a missing column, a header-less file and a broken quote are one error naming the file', async () => {
    const dir = tempDir();
    const noLabel = csv(dir, ['path,kind', ...flatRows()], 'a.csv');
    await expect(scanDataset(flat, { labels: { file: noLabel } })).rejects.toThrow(`${noLabel} has no label column: none of its columns (path, kind) is named`);
    await expect(scanDataset(flat, { labels: { file: noLabel, labelColumn: 'class' } })).rejects.toThrow(`${noLabel} has no column 'class' (--label-column); its columns: path, kind.`);
    const headless = csv(dir, flatRows(), 'b.csv');
    await expect(scanDataset(flat, { labels: { file: headless } })).rejects.toThrow(/has no image path column/);
    const broken = csv(dir, ['path,label', 'images/class0_img0.png,"class0', 'images/class0_img1.png,class0'], 'c.csv');
    const err = await scanDataset(flat, { labels: { file: broken } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toMatch(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not a readable CSV file \\(line \\d+\\)`));
    const ragged = csv(dir, ['path,label', 'images/class0_img0.png,class0,extra'], 'd.csv');
    await expect(scanDataset(flat, { labels: { file: ragged } })).rejects.toThrow(/is not a readable CSV file \(line 2\)/);
    await expect(scanDataset(flat, { labels: { file: join(dir, 'none.csv') } })).rejects.toThrow(`Cannot read --labels ${join(dir, 'none.csv')}: no such file.`);
  });

  it('one image under two labels is refused for a single-label classifier, naming it; tl data lists it', async () => {
    const rows = flatRows();
    const labels = csv(tempDir(), ['path,label', ...rows, `${rows[0]!.split(',')[0]},class2`]);
    const err = await scanDataset(flat, { labels: { file: labels } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabelConflictError);
    expect((err as Error).message).toContain(rows[0]!.split(',')[0]!);
    const shown = await runTl(['data', flat, '--labels', labels]);
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/1 image\(s\) under two classes/);
  });
});
