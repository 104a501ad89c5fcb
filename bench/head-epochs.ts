// `npm run bench -- --head-epochs`: whether fastai's `fine_tune` recipe (one epoch training the head alone before the
// backbone layers unfreeze) helps tl's default fine-tune, on two real datasets over 3 seeds: --head-epochs 1 against
// 0 at the same --epochs, and against 0 with one more epoch (the same number of passes).
import { armsSection, fashionSubset, runArms } from './arms.js';
import type { Section } from './section.js';

export async function headEpochsBench(root: string, work: string): Promise<Section> {
  const datasets = [
    { name: 'Fashion-MNIST classes 5-9, 100 per class', dir: await fashionSubset(work, 'fashion', [5, 6, 7, 8, 9], 100) },
    // The tops (t-shirt, pullover, coat, shirt): the classes Fashion-MNIST's classifiers confuse most.
    { name: 'Fashion-MNIST tops (classes 0, 2, 4, 6), 100 per class', dir: await fashionSubset(work, 'tops', [0, 2, 4, 6], 100) },
  ];
  const arms = [{ label: '--head-epochs 0 --epochs 3 (default)', args: ['--head-epochs', '0', '--epochs', '3'] }, { label: '--head-epochs 1 --epochs 3', args: ['--head-epochs', '1', '--epochs', '3'] }, { label: '--head-epochs 0 --epochs 4', args: ['--head-epochs', '0', '--epochs', '4'] }];
  const rows = runArms(root, work, datasets, arms, [1, 2, 3]);
  return armsSection('Head epochs before fine-tuning', 'tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam, lr 1e-4 for the fine-tune and 1e-3 for a head epoch, no calibration), seeds 1, 2, 3; each seed also draws the split. Test accuracy per seed, its mean, and the mean test log-loss.', rows);
}
