// `npm run bench -- --augment`: what each --augment level does to the default fine-tune, at the default 3 epochs and
// at 10, on two real datasets over 2 seeds. Augmented runs cannot cache the frozen part, so they also cost more.
import { armsSection, recipeDatasets, runArms } from './arms.js';
import type { Section } from './section.js';

export async function augmentBench(root: string, work: string): Promise<Section> {
  const datasets = await recipeDatasets(root, work);
  const arms = ([['none', 3], ['none', 10], ['standard', 3], ['standard', 10], ['trivial', 10], ['rand', 10]] as const).map(([level, epochs]) => ({ label: `--augment ${level} --epochs ${epochs}`, args: ['--augment', level, '--epochs', String(epochs)] }));
  const rows = runArms(root, work, datasets, arms, [1, 2]);
  return armsSection('Augmentation', 'tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam at 1e-4, no calibration) and each --augment level, at the default 3 epochs and at 10, seeds 1 and 2 (each seed also draws the split). Seconds are whole runs, one after another on this machine.', rows);
}
