import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { openDataset, scanDataset } from '../../src/data/index.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

/** DATA/<split folder>/<class>/*.png for each named split folder. */
async function preSplit(root: string, folders: string[], perClass = 10): Promise<void> {
  for (const folder of folders) {
    const tmp = join(root, `.${folder}`);
    await makeColourDataset(tmp, 2, perClass, 16);
    await mkdir(root, { recursive: true });
    await rename(tmp, join(root, folder));
  }
}

describe('dataset layouts', () => {
  it.each([
    [['train', 'valid', 'test']],
    [['train', 'validation', 'test']],
    [['Train', 'Validation', 'Testing']],
    [['training', 'val', 'TEST']],
  ])('%j is read as a pre-split layout of two classes', async (folders) => {
    const root = tempDir();
    await preSplit(root, folders);
    const scan = await scanDataset(root);
    expect(scan.layout).toBe('pre-split');
    expect(scan.classes).toEqual(['class0', 'class1']);
    const splitOf = (folder: string) => new Set(scan.items.filter((i) => i.rel.startsWith(`${folder}/`)).map((i) => i.split));
    expect(splitOf(folders[0]!)).toEqual(new Set(['train']));
    expect(splitOf(folders[1]!)).toEqual(new Set(['val']));
    expect(splitOf(folders[2]!)).toEqual(new Set(['test']));
  });

  it('a folder named like a split beside class folders is a class', async () => {
    const root = tempDir();
    await makeColourDataset(root, 2, 3, 16);
    const other = tempDir();
    await makeColourDataset(other, 1, 3, 20);
    await rename(join(other, 'class0'), join(root, 'test'));
    const scan = await scanDataset(root);
    expect(scan.layout).toBe('class-folders');
    expect(scan.classes).toEqual(['class0', 'class1', 'test']);
  });

  it('train/ + test/ without a validation folder holds --val out of train, per class, and says so', async () => {
    const root = tempDir();
    await preSplit(root, ['train', 'test'], 20);
    const dataset = await openDataset(root, { val: 0.25, test: 0.15, seed: 42, size: 16 });
    expect(dataset.splits.test).toHaveLength(40);
    for (const label of [0, 1]) {
      expect(dataset.splits.val.filter((i) => i.label === label)).toHaveLength(5);
      expect(dataset.splits.val.every((i) => i.rel.startsWith('train/'))).toBe(true);
    }
    expect(dataset.layoutNotes).toEqual(['pre-split folders: train/ as training, test/ as test', 'no validation folder: 25% of train/ is held out as the validation split (per class, seed 42; --val sets the share)']);
    const shown = await runCli(['data', root, '--val', '0.25'], { ...process.env, TL_HOME: tempDir() });
    expect(shown.exitCode).toBe(0);
    expect(shown.stdout).toContain('no validation folder: 25% of train/ is held out');
  });
});
