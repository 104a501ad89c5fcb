// `npm run bench -- --choices`: how well tl's own choices do. On three datasets (the bundled Fashion-MNIST sample, and
// two cut from python3-skimage's photographs: patches of five scenes, and textures), a full sweep fine-tunes MobileNetV2 at every block boundary
// `--freeze auto` considers (the run's defaults otherwise); then `--freeze auto` runs once. Its test accuracy is
// compared with the sweep's best, and its time with the sweep's. `tl rank` of the two offline backbones on the
// sample is timed too.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendInfo, Tf } from '../src/backend/index.js';
import { blockBoundaries } from '../src/model/depths.js';
import { rank } from '../src/rank/index.js';
import { MIN_FROZEN_SHARE } from '../src/train/freeze-auto.js';
import { finetune, type FinetuneOptions } from '../src/train/finetune.js';
import type { FreezeAutoResult } from '../src/train/freeze-auto.js';
import { loadPretrained } from '../src/weights/index.js';
import { PHOTOS, writePhotoTiles, writeTextures } from '../scripts/textures.js';

const log = (s: string) => process.stderr.write(`${s}\n`);
const fmt = (v: number, digits = 1) => v.toFixed(digits);

export interface ChoicesSection {
  title: string;
  lines: string[];
}

function table(head: string[], rows: (string | number)[][]): string[] {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

export async function choicesBench(tf: Tf, info: BackendInfo, work: string, sample: string, workers: number): Promise<ChoicesSection> {
  const store = join(work, 'store');
  const textures = join(work, 'textures');
  const written = await writeTextures(textures);
  const photos = join(work, 'photos');
  const tiles = await writePhotoTiles(photos);
  const datasets: [string, string][] = [['Fashion-MNIST sample (bundled, 300 images, 5 classes)', sample]];
  if (typeof tiles === 'number') datasets.push([`skimage photo tiles (${tiles} tiles of 32x32, 40 from each of ${PHOTOS.join(', ')}: which photograph a patch comes from)`, photos]);
  else log(`photo tiles skipped: ${tiles}`);
  if (typeof written === 'number') datasets.push([`skimage textures (brick, grass, gravel: ${written} tiles of 64x64 from python3-skimage's photographs)`, textures]);
  else log(`textures skipped: ${written}`);
  const base = (data: string, out: string, extra: Partial<FinetuneOptions>): FinetuneOptions => ({
    data, model: 'mobilenet_v2.nsfwjs', out: join(work, out), freeze: 'default', epochs: 'auto', batchSize: 16, lr: 'auto', accumulate: 1, bn: 'auto', dropout: 0.2, augment: 'none',
    val: 0.15, test: 0.15, seed: 42, resize: 'center-crop', maxPixels: 1e8, weights: 'pretrained', workers, engine: 'onnx', calibrate: 'temperature', store, ...extra,
  });
  const backbone = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: false, store });
  const depths = blockBoundaries(backbone.model).filter((d) => d.freeze >= MIN_FROZEN_SHARE * backbone.model.layers.length);
  backbone.model.dispose();
  const lines: string[] = [
    `MobileNetV2 (\`mobilenet_v2.nsfwjs\`) with the run's defaults (3 epochs when backbone layers train, 10 for the head alone; lr auto; 70/15/15 split, seed 42), on ONNX Runtime. The sweep fine-tunes at each of the ${depths.length} block boundaries \`--freeze auto\` considers; \`--freeze auto\` scores them by LogME from one pass, fine-tunes a few for 2 epochs, and trains at the best. Test sets are small (one image is 2.2 points on the sample), so differences of a point or two are noise.`,
    '',
  ];
  for (const [name, data] of datasets) {
    log(`choices: sweep on ${name}`);
    const sweep: { freeze: number; layer: string; test: number; seconds: number }[] = [];
    for (const d of [...depths].reverse()) {
      const t0 = performance.now();
      const out = `sweep-${sweep.length}`;
      const r = await finetune(tf, info, base(data, out, { freeze: d.freeze }));
      sweep.push({ freeze: d.freeze, layer: d.layer, test: r.metrics!.accuracy, seconds: (performance.now() - t0) / 1000 });
      rmSync(join(work, out), { recursive: true, force: true });
    }
    log(`choices: --freeze auto on ${name}`);
    const t0 = performance.now();
    const auto = await finetune(tf, info, base(data, 'auto', { freeze: 'auto' }));
    const autoSeconds = (performance.now() - t0) / 1000;
    const record = (auto as unknown as { outDir: string }).outDir;
    const fa = JSON.parse(await (await import('node:fs/promises')).readFile(join(record, 'config.json'), 'utf8')).freezeAuto as FreezeAutoResult;
    rmSync(join(work, 'auto'), { recursive: true, force: true });
    const best = sweep.reduce((a, b) => (b.test > a.test ? b : a));
    const sweepSeconds = sweep.reduce((a, b) => a + b.seconds, 0);
    const byDepth = new Map(fa.depths.map((d) => [d.freeze, d]));
    lines.push(`### ${name}`, '');
    lines.push(
      ...table(
        ['--freeze', 'boundary', 'LogME', 'probe val acc (2 epochs)', 'sweep test acc', 'sweep seconds'],
        [...sweep].reverse().map((s) => {
          const d = byDepth.get(s.freeze);
          return [`${s.freeze}${s.freeze === fa.chosen ? ' (auto)' : ''}`, s.layer, d ? d.logme.toFixed(4) : '-', d?.probe ? fmt(d.probe.valAccuracy, 3) : '-', fmt(s.test, 3), fmt(s.seconds)];
        }),
      ),
      '',
      `- \`--freeze auto\` chose ${fa.chosen} and reached test accuracy ${fmt(auto.metrics!.accuracy, 3)} in ${fmt(autoSeconds)} s (scoring ${fmt(fa.scoreSeconds)} s, ${fa.depths.filter((d) => d.probe).length} short fine-tunes, then the run); the sweep's best is ${fmt(best.test, 3)} at ${best.freeze} (${best.layer}), its ${sweep.length} runs took ${fmt(sweepSeconds)} s: auto is ${fmt(100 * (best.test - auto.metrics!.accuracy))} points below the best in ${fmt((100 * autoSeconds) / sweepSeconds, 0)}% of the sweep's time. The registry default (\`--freeze 100\`) is not a block boundary and is not in the sweep.`,
      '',
    );
  }
  log('choices: tl rank on the sample');
  const t0 = performance.now();
  const ranked = await rank(tf, { data: sample, models: ['mobilenet_v2.nsfwjs', 'inception_v3.nsfwjs'], batchSize: 16, workers, backend: info.name, engine: 'onnx', val: 0.15, test: 0.15, seed: 42, resize: 'center-crop', maxPixels: 1e8, probe: true, store });
  const rankSeconds = (performance.now() - t0) / 1000;
  lines.push(
    '### `tl rank --probe` of the two offline backbones on the sample',
    '',
    ...table(['model', 'LogME', 'TransRate', 'LEEP', 'probe val acc', 'seconds'], ranked.rows.map((r) => [r.model, r.logme.toFixed(4), r.transrate.toFixed(2), r.leep?.toFixed(4) ?? '-', r.probe ? fmt(r.probe.valAccuracy, 3) : '-', fmt(r.seconds)])),
    '',
    `- ${fmt(rankSeconds)} s in all (goal: under 60 s on 2 cores).`,
  );
  return { title: 'Choosing what to transfer: --freeze auto against a sweep, tl rank', lines };
}
