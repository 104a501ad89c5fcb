// `npm run bench -- --rates`: discriminative rates (--lr-decay-per-block) against one rate, at the default freeze and
// with more of the backbone training (--freeze 50), at 10 epochs, on two real datasets over 2 seeds.
import { armsSection, recipeDatasets, runArms } from './arms.js';
import type { Section } from './section.js';

export async function ratesBench(root: string, work: string): Promise<Section> {
  const datasets = await recipeDatasets(root, work);
  const arms = [
    { label: '--epochs 10', args: ['--epochs', '10'] },
    { label: '--lr-decay-per-block 0.7 --epochs 10', args: ['--lr-decay-per-block', '0.7', '--epochs', '10'] },
    { label: '--freeze 50 --epochs 10', args: ['--freeze', '50', '--epochs', '10'] },
    { label: '--freeze 50 --lr-decay-per-block 0.7 --epochs 10', args: ['--freeze', '50', '--lr-decay-per-block', '0.7', '--epochs', '10'] },
  ];
  const rows = runArms(root, work, datasets, arms, [1, 2]);
  return armsSection('Discriminative rates', 'tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100 unless given, Adam at 1e-4, no calibration) at 10 epochs, with one rate and with --lr-decay-per-block 0.7, seeds 1 and 2 (each seed also draws the split). Seconds are whole runs, one after another on this machine.', rows);
}
