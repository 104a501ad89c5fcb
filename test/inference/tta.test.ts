// Test-time augmentation (--tta, --tta-zoom): each image's probabilities averaged with its mirror image's, and with
// its zoomed centre's (and that crop's mirror).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { mirrored, zoomed } from '../../src/inference/index.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');
const mirrors = tempDir();
const zooms = tempDir();

beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
  // At the images' own size, so decoding a mirrored file gives exactly the mirrored pixels.
  const r = await runTl(['finetune', data, '--input-size', '32', '--freeze', 'all', '--lr', '0.01', '--epochs', '2', '--batch-size', '4', '--calibrate', 'none', '--out', run, '--quiet'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
  mkdirSync(join(mirrors, 'class0'));
  for (const i of [0, 1, 2]) await sharp(join(data, 'class0', `img${i}.png`)).flop().toFile(join(mirrors, 'class0', `img${i}.png`));
  // The zoomed views as tl draws them, and their mirrors, written losslessly at the input size.
  for (const dir of ['zoom', 'zoom-mirror']) mkdirSync(join(zooms, dir));
  for (const i of [0, 1, 2]) {
    const raw = await sharp(join(data, 'class0', `img${i}.png`)).removeAlpha().raw().toBuffer();
    const z = zoomed(new Uint8Array(raw), 1, 32);
    await sharp(Buffer.from(z), { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(zooms, 'zoom', `img${i}.png`));
    await sharp(Buffer.from(mirrored(z, 1, 32)), { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(zooms, 'zoom-mirror', `img${i}.png`));
  }
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

  it("zooms on each image's centre 87.5% and resizes it back", () => {
    // A 16 px image whose red channel is 10 x column: the zoomed row spans columns 1 to 14 of the original.
    const size = 16;
    const pixels = Uint8Array.from({ length: size * size * 3 }, (_, i) => (i % 3 === 0 ? 10 * (Math.floor(i / 3) % size) : 0));
    const row = Array.from({ length: size }, (_, x) => zoomed(pixels, 1, size)[x * 3]!);
    // Output column x samples 1 + (x + 0.5) * 14 / 16 - 0.5 of the input.
    expect(row).toEqual(row.map((_, x) => Math.round(10 * (1 + ((x + 0.5) * 14) / 16 - 0.5))));
  });

  it('tl predict --tta --tta-zoom gives the mean of four views: the image, its mirror, its zoom and the zoom mirrored', async () => {
    const originals = [0, 1, 2].map((i) => join(data, 'class0', `img${i}.png`));
    const views = [originals, originals.map((f) => f.replace(data, mirrors)), originals.map((f) => f.replace(join(data, 'class0'), join(zooms, 'zoom'))), originals.map((f) => f.replace(join(data, 'class0'), join(zooms, 'zoom-mirror')))];
    const each = await Promise.all(views.map((files) => probsOf([...files, '--engine', 'onnx'])));
    const tta = await probsOf([...originals, '--engine', 'onnx', '--tta', '--tta-zoom']);
    tta.forEach((p, i) => {
      for (const cls of ['class0', 'class1']) expect(p[cls]!).toBeCloseTo(each.reduce((sum, v) => sum + v[i]![cls]!, 0) / 4, 5);
    });
    expect(Math.abs(each[0]![0]!.class0! - each[2]![0]!.class0!)).toBeGreaterThan(1e-6);
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
