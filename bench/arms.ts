// Fine-tunes that differ in a few options ("arms"), on real datasets over seeds: test accuracy per seed, its mean and
// the mean test log-loss, as one table. Each seed also draws the split.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFashionMnist } from '../scripts/fashion-mnist.js';
import { debianFile } from '../scripts/debian.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);

export interface Arm {
  label: string;
  args: string[];
}

/** A Fashion-MNIST subset of `perClass` images of each of `classes`, written under `work`. */
export async function fashionSubset(work: string, name: string, classes: number[], perClass: number): Promise<string> {
  const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
  if (idx.path === null) throw new Error(`this check needs Fashion-MNIST: ${idx.reason}`);
  const out = join(work, name);
  await writeFashionMnist({ src: join(idx.path, '..'), out, perClass, classes, split: 'train' });
  return out;
}

/** A column of its own beyond the standard ones: its heading, and its cell from each seed's `--json` result. */
export interface ExtraColumn {
  head: string;
  cell: (results: Record<string, unknown>[]) => string;
}

/** The two real datasets the recipe benches compare arms on: the bundled sample, and Fashion-MNIST classes 5-9. */
export async function recipeDatasets(root: string, work: string): Promise<{ name: string; dir: string }[]> {
  return [
    { name: 'the bundled sample (Fashion-MNIST, 5 classes, 60 per class)', dir: join(root, 'datasets', 'fashion-mnist-sample') },
    { name: 'Fashion-MNIST classes 5-9, 100 per class', dir: await fashionSubset(work, 'fashion', [5, 6, 7, 8, 9], 100) },
  ];
}

export function runArms(root: string, work: string, datasets: { name: string; dir: string }[], arms: Arm[], seeds: number[], extra?: ExtraColumn): (string | number)[][] {
  const env = { ...process.env, TL_HOME: join(work, 'home') };
  const rows: (string | number)[][] = [];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const d of datasets) {
    for (const arm of arms) {
      const acc: number[] = [];
      const loss: number[] = [];
      const seconds: number[] = [];
      const results: Record<string, unknown>[] = [];
      for (const seed of seeds) {
        log(`${d.name}, ${arm.label}, seed ${seed}`);
        const started = performance.now();
        const out = execFileSync(process.execPath, [join(root, 'bin', 'tl.js'), 'finetune', d.dir, ...arm.args, '--seed', String(seed), '--calibrate', 'none', '--out', join(work, 'run'), '--json'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 26 });
        seconds.push((performance.now() - started) / 1000);
        const r = JSON.parse(out) as { test: { accuracy: number; loss: number } };
        results.push(r);
        acc.push(r.test.accuracy);
        loss.push(r.test.loss);
        rmSync(join(work, 'run'), { recursive: true, force: true });
      }
      rows.push([d.name, arm.label, acc.map((a) => a.toFixed(3)).join(', '), mean(acc).toFixed(3), mean(loss).toFixed(4), mean(seconds).toFixed(0), ...(extra ? [extra.cell(results)] : [])]);
    }
  }
  return rows;
}

const ARMS_HEAD = ['dataset', 'options', 'test accuracy per seed', 'mean', 'mean log-loss', 'seconds per run'];

/** A section of BENCHMARKS.md: what was run, then the rows of runArms as a table. */
export function armsSection(title: string, text: string, rows: (string | number)[][], extra?: ExtraColumn): Section {
  const head = [...ARMS_HEAD, ...(extra ? [extra.head] : [])];
  return { title, lines: [text, '', `| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)] };
}
