// `npm run bench -- --views`: augmentation drawn anew every epoch (the frozen part runs on every batch) against
// --augment-views K (K views of each training image drawn once, their frozen-part outputs cached) and against no
// augmentation, at 10 epochs, on the sample and on tiles of skimage's colour photographs, over 2 seeds.
import { join } from 'node:path';
import { writePhotoTiles } from '../scripts/textures.js';
import { armsSection, runArms, type ExtraColumn } from './arms.js';
import type { Section } from './section.js';

/** MobileNetV2 --freeze 100 at 224 px: the boundary is block_10's output, 14 x 14 x 96 float32 per image. */
const BOUNDARY_BYTES = 14 * 14 * 96 * 4;

export async function viewsBench(root: string, work: string): Promise<Section> {
  const photos = join(work, 'photos');
  const tiles = await writePhotoTiles(photos);
  if (typeof tiles === 'string') throw new Error(`this check needs python3-skimage's photographs: ${tiles}`);
  const datasets = [
    { name: 'the bundled sample (Fashion-MNIST, 5 classes, 60 per class)', dir: join(root, 'datasets', 'fashion-mnist-sample') },
    { name: `skimage photo tiles (5 photographs, 40 tiles of 32 px each)`, dir: photos },
  ];
  const arms = [
    { label: '--epochs 10', args: ['--epochs', '10'] },
    { label: '--augment standard --epochs 10', args: ['--augment', 'standard', '--epochs', '10'] },
    { label: '--augment standard --augment-views 4 --epochs 10', args: ['--augment', 'standard', '--augment-views', '4', '--epochs', '10'] },
    { label: '--augment standard --augment-views 8 --epochs 10', args: ['--augment', 'standard', '--augment-views', '8', '--epochs', '10'] },
  ];
  const cached: ExtraColumn = {
    head: 'frozen part run over (cached)',
    cell: (results) => {
      const images = (results[0] as { frozenPass: { images: number } | null }).frozenPass?.images;
      return images === undefined ? 'every batch (nothing cached)' : `${images} images (${((images * BOUNDARY_BYTES) / 2 ** 20).toFixed(0)} MiB)`;
    },
  };
  const rows = runArms(root, work, datasets, arms, [1, 2], cached);
  return armsSection('Augmentation that keeps the cache', 'tl finetune with its defaults (mobilenet_v2.nsfwjs, --freeze 100, Adam at 1e-4, no calibration) at 10 epochs: no augmentation; --augment standard drawn anew every epoch; and its views drawn once and cached (--augment-views 4 and 8), seeds 1 and 2 (each seed also draws the split). Seconds are whole runs, one after another on this machine. The cache holds 14 x 14 x 96 float32 per image (block_10\'s output).', rows, cached);
}
