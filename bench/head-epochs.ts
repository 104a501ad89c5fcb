// `npm run bench -- --head-epochs`: whether fastai's `fine_tune` recipe (one epoch training the head alone before the
// backbone layers unfreeze) helps tl's default fine-tune, on two real datasets over 3 seeds: --head-epochs 1 against
// 0 at the same --epochs, and against 0 with one more epoch (the same number of passes).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFashionMnist } from '../scripts/fashion-mnist.js';
import { debianFile } from '../scripts/debian.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const ARMS = [{ label: '--head-epochs 0 --epochs 3 (default)', args: ['--head-epochs', '0', '--epochs', '3'] }, { label: '--head-epochs 1 --epochs 3', args: ['--head-epochs', '1', '--epochs', '3'] }, { label: '--head-epochs 0 --epochs 4', args: ['--head-epochs', '0', '--epochs', '4'] }];
const SEEDS = [1, 2, 3];

export async function headEpochsBench(root: string, work: string): Promise<Section> {
  const env = { ...process.env, TL_HOME: join(work, 'home') };
  const idx = debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
  debianFile('dataset-fashion-mnist', '/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz');
  if (idx.path === null) throw new Error(`this check needs Fashion-MNIST: ${idx.reason}`);
  const fashion = join(work, 'fashion');
  await writeFashionMnist({ src: join(idx.path, '..'), out: fashion, perClass: 100, classes: [5, 6, 7, 8, 9], split: 'train' });
  // The tops (t-shirt, pullover, coat, shirt): the classes Fashion-MNIST's classifiers confuse most.
  const tops = join(work, 'tops');
  await writeFashionMnist({ src: join(idx.path, '..'), out: tops, perClass: 100, classes: [0, 2, 4, 6], split: 'train' });
  const datasets = [{ name: 'Fashion-MNIST classes 5-9, 100 per class', dir: fashion }, { name: 'Fashion-MNIST tops (classes 0, 2, 4, 6), 100 per class', dir: tops }];
  const rows: (string | number)[][] = [];
  for (const d of datasets) {
    for (const arm of ARMS) {
      const acc: number[] = [];
      const loss: number[] = [];
      for (const seed of SEEDS) {
        log(`head epochs: ${d.name}, ${arm.label}, seed ${seed}`);
        const out = execFileSync(process.execPath, [join(root, 'bin', 'tl.js'), 'finetune', d.dir, ...arm.args, '--seed', String(seed), '--calibrate', 'none', '--out', join(work, 'run'), '--json'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 26 });
        const r = JSON.parse(out) as { test: { accuracy: number; loss: number } };
        acc.push(r.test.accuracy);
        loss.push(r.test.loss);
        execFileSync('rm', ['-rf', join(work, 'run')]);
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      rows.push([d.name, arm.label, acc.map((a) => a.toFixed(3)).join(', '), mean(acc).toFixed(3), mean(loss).toFixed(4)]);
    }
  }
  return {
    title: 'Head epochs before fine-tuning',
    lines: [
      `tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam, lr 1e-4 for the fine-tune and 1e-3 for a head epoch, no calibration), seeds ${SEEDS.join(', ')}; each seed also draws the split. Test accuracy per seed, its mean, and the mean test log-loss.`,
      '',
      '| dataset | options | test accuracy per seed | mean | mean log-loss |',
      '| --- | --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ],
  };
}
