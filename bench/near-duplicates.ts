// `npm run bench -- --near-duplicates`: precision and recall of the near-duplicate finder on images with injected
// copies (resized to half, JPEG quality 70, cropped to 90% at a random offset; 30 of each dataset's images), on
// Fashion-MNIST (500 images, 5 classes) and on tiles of skimage's colour photographs. A found pair counts as right
// when it is an injected copy and its original.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { MIN_SCORE, nearDuplicates, WARN_SCORE } from '../src/data/near-duplicates.js';
import { scanDataset } from '../src/data/index.js';
import { prng } from '../src/util/random.js';
import { writePhotoTiles } from '../scripts/textures.js';
import { fashionSubset } from './arms.js';
import type { Section } from './section.js';

const log = (s: string) => process.stderr.write(`${s}\n`);

/** Writes 30 copies of randomly chosen images beside them; returns the pairs (relative paths, sorted). */
async function injectCopies(root: string, seed: number): Promise<{ pairs: Set<string>; kinds: Map<string, string> }> {
  const files = readdirSync(root).flatMap((c) => readdirSync(join(root, c)).map((f) => `${c}/${f}`)).sort();
  const rand = prng(seed);
  const pairs = new Set<string>();
  const kinds = new Map<string, string>();
  const used = new Set<string>();
  for (let i = 0; pairs.size < 30; i++) {
    const original = files[Math.floor(rand() * files.length)]!;
    if (used.has(original)) continue;
    used.add(original);
    const kind = ['resized to half', 'JPEG quality 70', 'cropped to 90%'][i % 3]!;
    const copy = original.replace(/\.\w+$/, `-copy${i}.${kind.startsWith('JPEG') ? 'jpg' : 'png'}`);
    const { width = 0, height = 0 } = await sharp(join(root, original)).metadata();
    let img = sharp(join(root, original));
    if (kind.startsWith('resized')) img = img.resize(Math.round(width / 2), Math.round(height / 2)).png();
    else if (kind.startsWith('JPEG')) img = img.jpeg({ quality: 70 });
    else {
      const [w, h] = [Math.round(width * 0.9), Math.round(height * 0.9)];
      img = img.extract({ left: Math.floor(rand() * (width - w + 1)), top: Math.floor(rand() * (height - h + 1)), width: w, height: h }).png();
    }
    await img.toFile(join(root, copy));
    const key = [original, copy].sort().join(' = ');
    pairs.add(key);
    kinds.set(key, kind);
  }
  return { pairs, kinds };
}

export async function nearDuplicatesBench(root: string, work: string): Promise<Section> {
  const photos = join(work, 'photos');
  const tiles = await writePhotoTiles(photos, 32, 100);
  if (typeof tiles === 'string') throw new Error(`this check needs python3-skimage's photographs: ${tiles}`);
  const datasets = [
    { name: 'Fashion-MNIST classes 0, 1, 7, 8, 9, 100 per class (28 px)', dir: await fashionSubset(work, 'fashion', [0, 1, 7, 8, 9], 100) },
    { name: `skimage photo tiles (5 photographs, ${tiles} tiles of 32 px)`, dir: photos },
  ];
  const rows: string[][] = [];
  for (const d of datasets) {
    const { pairs, kinds } = await injectCopies(d.dir, 3);
    const { items } = await scanDataset(d.dir, { allowConflicts: true });
    log(`${d.name}: ${items.length} images`);
    for (const [what, minScore] of [['tl data --duplicates (0.96)', MIN_SCORE], ['tl finetune\'s warning (0.98)', WARN_SCORE]] as const) {
      const started = performance.now();
      const found = await nearDuplicates(items, undefined, minScore);
      const seconds = (performance.now() - started) / 1000;
      const right = found.filter((p) => pairs.has([p.a, p.b].sort().join(' = ')));
      const byKind = ['resized to half', 'JPEG quality 70', 'cropped to 90%'].map((k) => `${right.filter((p) => kinds.get([p.a, p.b].sort().join(' = ')) === k).length}/10 ${k}`);
      rows.push([d.name, what, String(items.length), String(found.length), (right.length / Math.max(1, found.length)).toFixed(2), (right.length / pairs.size).toFixed(2), byKind.join(', '), seconds.toFixed(1)]);
    }
  }
  const head = ['dataset', 'threshold', 'images', 'pairs found', 'precision', 'recall', 'copies found by kind', 'seconds'];
  return {
    title: 'Near-duplicates',
    lines: [
      'The near-duplicate finder (src/data/near-duplicates.ts: crop-aware correlation of grayscale thumbnails; a pair when each is the other\'s best match, at the threshold or more, beating both images\' next-best match by 0.02) on each dataset with 30 injected copies of distinct images: 10 resized to half, 10 re-encoded as JPEG quality 70, 10 cropped to 90% at a seeded offset. Precision: the share of pairs found that are a copy and its original; recall: the share of copies found.',
      '',
      `| ${head.join(' | ')} |`,
      `| ${head.map(() => '---').join(' | ')} |`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ],
  };
}
