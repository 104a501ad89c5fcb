// `npm run bench -- --mixup`: mixup and CutMix against none, at 10 epochs (mixing, like augmentation, needs more
// epochs than the default 3), on two real datasets over 2 seeds.
import { armsSection, recipeDatasets, runArms } from './arms.js';
import type { Section } from './section.js';

export async function mixupBench(root: string, work: string): Promise<Section> {
  const datasets = await recipeDatasets(root, work);
  const arms = [
    { label: '--epochs 10', args: ['--epochs', '10'] },
    { label: '--mixup 0.8 --epochs 10', args: ['--mixup', '0.8', '--epochs', '10'] },
    { label: '--cutmix 1 --epochs 10', args: ['--cutmix', '1', '--epochs', '10'] },
    { label: '--mixup 0.8 --cutmix 1 --epochs 10', args: ['--mixup', '0.8', '--cutmix', '1', '--epochs', '10'] },
  ];
  const rows = runArms(root, work, datasets, arms, [1, 2]);
  return armsSection('Mixup and CutMix', "tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam at 1e-4, no calibration) at 10 epochs, without mixing and with timm's usual alphas, seeds 1 and 2 (each seed also draws the split). Seconds are whole runs, one after another on this machine (mixing runs the frozen part on every batch, as augmentation does).", rows);
}
