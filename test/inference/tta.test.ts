// Test-time augmentation (--tta): each image's probabilities averaged with its mirror image's.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { mirrored } from '../../src/inference/index.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');
const mirrors = tempDir();

beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
  // At the images' own size, so decoding a mirrored file gives exactly the mirrored pixels.
  const r = await runTl(['finetune', data, '--input-size', '32', '--freeze', 'all', '--lr', '0.01', '--epochs', '2', '--batch-size', '4', '--calibrate', 'none', '--out', run, '--quiet'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
  mkdirSync(join(mirrors, 'class0'));
  for (const i of [0, 1, 2]) await sharp(join(data, 'class0', `img${i}.png`)).flop().toFile(join(mirrors, 'class0', `img${i}.png`));
}, 120_000);

type Predictions = { predictions: { path: string; top: { class: string; probability: number }[] }[] };
const probsOf = async (args: string[]) => {
  const r = await runTl(['predict', '--model', run, ...args, '--top', '2', '--json'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Predictions).predictions.map((p) => Object.fromEntries(p.top.map((t) => [t.class, t.probability])) as Record<string, number>);
};

describe('--tta', () => {
  it('mirrors each image left to right', () => {
    // Two 2x2 RGB images.
    const pixels = Uint8Array.from({ length: 24 }, (_, i) => i);
    expect(Array.from(mirrored(pixels, 2, 2))).toEqual([3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8, 15, 16, 17, 12, 13, 14, 21, 22, 23, 18, 19, 20]);
  });

  for (const engine of ['onnx', 'tfjs'] as const) it(`tl predict --tta gives the mean of the probabilities of the image and of its mirror image (${engine})`, async () => {
    const originals = [0, 1, 2].map((i) => join(data, 'class0', `img${i}.png`));
    const flopped = [0, 1, 2].map((i) => join(mirrors, 'class0', `img${i}.png`));
    const plain = await probsOf([...originals, '--engine', engine]);
    const mirror = await probsOf([...flopped, '--engine', engine]);
    const tta = await probsOf([...originals, '--engine', engine, '--tta']);
    tta.forEach((p, i) => {
      for (const cls of ['class0', 'class1']) expect(p[cls]!).toBeCloseTo((plain[i]![cls]! + mirror[i]![cls]!) / 2, 5);
    });
    // The mirror changes the probabilities (a check that can fail): the colour noise is not symmetric.
    expect(Math.abs(plain[0]!.class0! - mirror[0]!.class0!)).toBeGreaterThan(1e-6);
  });
});
