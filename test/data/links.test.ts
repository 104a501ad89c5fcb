// Which class an image is under is decided from real paths and bytes: folder links inside class folders, loops,
// links out of the dataset, and the same bytes under two classes.
import { cpSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { scanDataset } from '../../src/data/index.js';
import { collectNotices } from '../helpers/notices.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

/** DATA/a, DATA/b (each 6 images in the class folder) and DATA/b/sub (4 more in b). */
async function dataset(): Promise<string> {
  const root = tempDir();
  await makeColourDataset(root, 2, 6, 16);
  const sub = tempDir();
  await makeColourDataset(sub, 2, 2, 24);
  mkdirSync(join(root, 'class1', 'sub'));
  for (const c of ['class0', 'class1']) for (const f of readdirSync(join(sub, c))) cpSync(join(sub, c, f), join(root, 'class1', 'sub', `${c}-${f}`));
  return root;
}

const countOf = (scan: Awaited<ReturnType<typeof scanDataset>>, label: number) => scan.items.filter((i) => i.label === label).length;

describe('folder links and identical files in a dataset', () => {
  it('a link from one class into another is a conflict naming both paths, not a relabelling by visit order', async () => {
    const root = await dataset();
    symlinkSync('../class1/sub', join(root, 'class0', 'x'));
    const err = (await scanDataset(root).then(() => new Error('no error'), (e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^4 images are under two classes in .*: class0\/x\/class0-img0\.png = class1\/sub\/class0-img0\.png \(same file\)/);
    expect(err.message).toContain('a single-label classifier needs each image in one class');
    // tl data lists every conflict and counts each image once, in neither class.
    const r = await runCli(['data', root, '--val', '0', '--test', '0', '--json'], { ...process.env, TL_HOME: tempDir() });
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { conflicts: { files: string[]; classes: string[] }[]; classes: { name: string; total: number }[] };
    expect(summary.conflicts).toHaveLength(4);
    expect(summary.conflicts[0]!.classes).toEqual(['class0', 'class1']);
    expect(summary.classes.map((c) => c.total)).toEqual([6, 6]);
  });

  it('a link to a folder above it is a loop, listed as one; the other classes keep their images', async () => {
    const root = await dataset();
    symlinkSync('..', join(root, 'class0', 'up'));
    const scan = await scanDataset(root);
    expect(countOf(scan, 0)).toBe(6);
    expect(countOf(scan, 1)).toBe(10);
    expect(scan.skipped).toEqual([{ path: join(root, 'class0', 'up'), reason: expect.stringMatching(/^symlink loop \(it leads to .*, a folder that contains it\)$/) }]);
  });

  it('a link to a folder of the same class counts its images once, saying which were reached twice', async () => {
    const root = await dataset();
    symlinkSync('sub', join(root, 'class1', 'again'));
    const scan = await scanDataset(root);
    expect(countOf(scan, 1)).toBe(10);
    // 'again' sorts first, so the images under sub/ are the ones reached a second time.
    expect(scan.skipped.filter((s) => s.reason.endsWith('(reached through a symlink)'))).toHaveLength(4);
    expect(scan.skipped).toContainEqual({ path: join(root, 'class1', 'sub', 'class0-img0.png'), reason: 'the same file as class1/again/class0-img0.png (reached through a symlink)' });
  });

  it('a link out of the dataset brings its images in under its class, counted and said', async () => {
    const root = await dataset();
    const elsewhere = tempDir();
    await makeColourDataset(elsewhere, 3, 3, 16);
    symlinkSync(join(elsewhere, 'class2'), join(root, 'class0', 'more'));
    const { result: scan, notices } = await collectNotices(() => scanDataset(root));
    expect(countOf(scan, 0)).toBe(9);
    expect(scan.outside).toEqual([{ link: join(root, 'class0', 'more'), target: join(elsewhere, 'class2'), images: 3 }]);
    expect(notices).toContain(`${join(root, 'class0', 'more')} links outside the dataset (to ${join(elsewhere, 'class2')}): its 3 images are counted under its class`);
  });

  it('identical bytes under two classes stop the run naming the files; within one class they are listed as duplicates', async () => {
    const root = await dataset();
    cpSync(join(root, 'class0', 'img1.png'), join(root, 'class1', 'copy.png'));
    cpSync(join(root, 'class0', 'img2.png'), join(root, 'class0', 'twin.png'));
    const r = await runCli(['finetune', root, '--model', 'mobilenet_v2.nsfwjs', '--input-size', '32', '--epochs', '1', '--out', join(tempDir(), 'run')], { ...process.env, TL_HOME: tempDir() });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('1 image is under two classes in');
    expect(r.stderr).toContain('class0/img1.png = class1/copy.png (identical content)');
    const scan = await scanDataset(root, { allowConflicts: true });
    expect(scan.duplicates).toEqual([['class0/img2.png', 'class0/twin.png']]);
    // One message line however many copies: a group of many files is shown by its first three and its size.
    for (let i = 0; i < 6; i++) cpSync(join(root, 'class0', 'img3.png'), join(root, 'class1', `many${i}.png`));
    const many = (await scanDataset(root).then(() => new Error('no error'), (e: unknown) => e)) as Error;
    expect(many.message).toContain('class0/img3.png = class1/many0.png = class1/many1.png = ... (7 files) (identical content)');
    expect(countOf(scan, 0)).toBe(6);
  });
});
