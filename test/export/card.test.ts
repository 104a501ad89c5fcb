// A model tl writes says how to feed it: tl.json beside every TensorFlow.js model (a run's and an export's) and the
// same facts in model.onnx's metadata, from one schema.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxSession } from '../../src/onnx/runtime.js';
import { deploySchema } from '../../src/registry/metadata.js';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');
beforeAll(async () => {
  await makeColourDataset(data, 2, 8, 32);
  const r = await runTl(['finetune', data, '--input-size', '40', '--resize', 'pad', '--freeze', 'all', '--epochs', '1', '--batch-size', '4', '--calibrate', 'none', '--out', run, '-q'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
}, 120_000);

const props = (file: string) => Object.fromEntries(onnx.ModelProto.decode(readFileSync(file)).metadataProps.map((p) => [p.key, p.value]));

describe('tl.json', () => {
  it("a run's model and its exports carry labels, input, resize and preprocessing, the same in tl.json and model.onnx", async () => {
    const card = deploySchema.parse(JSON.parse(readFileSync(join(run, 'model', 'tl.json'), 'utf8')));
    expect(card).toMatchObject({ labels: ['class0', 'class1'], input: { layout: 'NHWC', size: 40 }, resize: 'pad', preprocess: { mode: 'raw01', formula: 'x / 255' }, temperature: null });
    const onnxProps = props(join(run, 'model.onnx'));
    expect(JSON.parse(onnxProps['tl.labels']!)).toEqual(card.labels);
    expect([onnxProps['tl.resize'], onnxProps['tl.preprocess'], onnxProps['tl.preprocess.formula']]).toEqual([card.resize, card.preprocess.mode, card.preprocess.formula]);
    const out = join(tempDir(), 'tfjs');
    const exported = await runTl(['export', run, '--format', 'tfjs', '--out', out], { TL_HOME: home });
    expect(exported.exitCode, exported.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'tl.json'), 'utf8'))).toEqual(card);
    const file = join(tempDir(), 'm.onnx');
    expect((await runTl(['export', run, '--out', file], { TL_HOME: home })).exitCode).toBe(0);
    expect(props(file)).toEqual(onnxProps);
  });

  it('--quantize float16 halves the ONNX file and gives the float32 model\'s probabilities to float16 rounding', async () => {
    const full = join(tempDir(), 'm.onnx');
    const half = join(tempDir(), 'h.onnx');
    expect((await runTl(['export', run, '--out', full], { TL_HOME: home })).exitCode).toBe(0);
    const r = await runTl(['export', run, '--out', half, '--quantize', 'float16', '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { float16: { converted: number; kept: string[] } }).float16.kept).toEqual([]);
    const [a, b] = [readFileSync(full), readFileSync(half)];
    expect(b.length / a.length).toBeLessThan(0.55);
    // The labels and preprocessing travel with it.
    expect(props(half)).toEqual(props(full));
    const input = Float32Array.from({ length: 4 * 40 * 40 * 3 }, (_, i) => (Math.sin(i) + 1) * 127.5);
    const outputs: Float32Array[] = [];
    for (const bytes of [a, b]) {
      const session = await OnnxSession.open(new Uint8Array(bytes), { threads: 1 });
      outputs.push((await session.run([{ data: input, shape: [4, 40, 40, 3] }]))[0]!);
      await session.close();
    }
    const diff = outputs[0]!.reduce((m, v, i) => Math.max(m, Math.abs(v - outputs[1]![i]!)), 0);
    expect(diff).toBeGreaterThan(0);
    // float16 keeps 11 significant bits (relative 5e-4 per weight): probabilities move by a few thousandths.
    expect(diff).toBeLessThan(1e-2);
    const top = (o: Float32Array, i: number) => (o[2 * i]! > o[2 * i + 1]! ? 0 : 1);
    expect([0, 1, 2, 3].map((i) => top(outputs[1]!, i))).toEqual([0, 1, 2, 3].map((i) => top(outputs[0]!, i)));
    const refused = await runTl(['export', run, '--out', join(tempDir(), 'u.onnx'), '--quantize', 'uint8'], { TL_HOME: home });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('--quantize uint8 applies to TensorFlow.js exports');
  });

  it('--quantize float16 and uint8 shrink a TensorFlow.js export that TensorFlow.js loads back to nearly the same answers', async () => {
    const images = [0, 1, 2, 3].map((i) => join(data, `class${i % 2}`, `img${i}.png`));
    const answers: Record<string, number[][]> = {};
    const sizes: Record<string, number> = {};
    for (const q of ['none', 'float16', 'uint8']) {
      const out = join(tempDir(), q);
      const r = await runTl(['export', run, '--format', 'tfjs', '--out', out, '--quantize', q], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(0);
      sizes[q] = readFileSync(join(out, 'weights.bin')).length;
      const manifest = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { weightsManifest: { weights: { dtype: string; quantization?: { dtype: string; min?: number; scale?: number } }[] }[] };
      // Kernels are stored as asked; biases and BatchNorm statistics (under 4,096 values) stay float32.
      const big = manifest.weightsManifest[0]!.weights.filter((w) => w.dtype === 'float32' && (w as unknown as { shape: number[] }).shape.reduce((a, b) => a * b, 1) >= 4096);
      expect(big.length).toBeGreaterThan(10);
      expect(big.every((w) => (q === 'none' ? w.quantization === undefined : w.quantization?.dtype === q))).toBe(true);
      // uint8: zero is one of the 256 values (min is a whole number of steps below it).
      if (q === 'uint8') for (const w of big) expect(Math.abs(w.quantization!.min! / w.quantization!.scale! - Math.round(w.quantization!.min! / w.quantization!.scale!))).toBeLessThan(1e-6);
      const p = await runTl(['predict', '--model', out, ...images, '--top', '2', '--json', '--engine', 'tfjs'], { TL_HOME: home });
      expect(p.exitCode, p.stderr).toBe(0);
      answers[q] = (JSON.parse(p.stdout) as { predictions: { top: { class: string; probability: number }[] }[] }).predictions.map((x) => [...x.top].sort((a, b) => a.class.localeCompare(b.class)).map((t) => t.probability));
    }
    expect(sizes['float16']! / sizes['none']!).toBeLessThan(0.55);
    expect(sizes['uint8']! / sizes['none']!).toBeLessThan(0.3);
    const gap = (a: number[][], b: number[][]) => Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i]![j]!))));
    expect(gap(answers['float16']!, answers['none']!)).toBeLessThan(1e-2);
    expect(gap(answers['uint8']!, answers['none']!)).toBeGreaterThan(0);
    expect(gap(answers['uint8']!, answers['none']!)).toBeLessThan(0.1);
  });

  it('tl predict reads an exported .onnx file with what its metadata says, as it reads the run', async () => {
    const file = join(tempDir(), 'm.onnx');
    expect((await runTl(['export', run, '--out', file], { TL_HOME: home })).exitCode).toBe(0);
    const images = [join(data, 'class0', 'img0.png'), join(data, 'class1', 'img1.png')];
    type Out = { classes: string[]; predictions: { top: { class: string; probability: number }[] }[] };
    const predict = async (model: string, extra: string[] = []) => {
      const r = await runTl(['predict', '--model', model, ...images, '--top', '2', '--engine', 'onnx', '--json', ...extra], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Out;
    };
    const fromRun = await predict(run);
    const fromFile = await predict(file);
    expect(fromFile.classes).toEqual(fromRun.classes);
    fromFile.predictions.forEach((p, i) => p.top.forEach((t, j) => {
      expect(t.class).toBe(fromRun.predictions[i]!.top[j]!.class);
      expect(t.probability).toBeCloseTo(fromRun.predictions[i]!.top[j]!.probability, 5);
    }));
    // A run trained with --resize pad is read with pad by tl predict as by its export: on a wide image, where
    // center-crop would see other pixels.
    const wide = join(tempDir(), 'wide.png');
    const stripes = Buffer.alloc(80 * 20 * 3);
    for (let p = 0; p < 80 * 20; p++) stripes.set((p % 80) < 20 ? [250, 10, 10] : (p % 80) < 60 ? [10, 10, 250] : [10, 250, 10], p * 3);
    await sharp(stripes, { raw: { width: 80, height: 20, channels: 3 } }).png().toFile(wide);
    const wideRun = await runTl(['predict', '--model', run, wide, '--top', '2', '--json'], { TL_HOME: home });
    const wideFile = await runTl(['predict', '--model', file, wide, '--top', '2', '--json'], { TL_HOME: home });
    const probsOf = (r: { stdout: string }) => (JSON.parse(r.stdout) as Out).predictions[0]!.top.map((t) => `${t.class} ${t.probability.toFixed(5)}`);
    expect(probsOf(wideRun)).toEqual(probsOf(wideFile));
    // tl eval reads it too: on the whole dataset, the metrics the run folder gets on all of it.
    type Eval = { metrics: { accuracy: number; count: number; logLoss: number }; files: string[] };
    const evaluate = async (model: string) => {
      const r = await runTl(['eval', '--model', model, data, '--split', 'all', '--json', '--engine', 'onnx', '--out', join(tempDir(), 'e')], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Eval;
    };
    const [fromRunEval, fromFileEval] = [await evaluate(run), await evaluate(file)];
    expect(fromFileEval.metrics.count).toBe(16);
    expect(fromFileEval.metrics.accuracy).toBe(fromRunEval.metrics.accuracy);
    expect(fromFileEval.metrics.logLoss).toBeCloseTo(fromRunEval.metrics.logLoss, 5);
    const noData = await runTl(['eval', '--model', file], { TL_HOME: home });
    expect(noData.exitCode).toBe(2);
    expect(noData.stderr).toContain('records no split: pass the labelled folder');
    // A backbone export names no labels: not a classifier tl can read back.
    const backbone = join(tempDir(), 'b.onnx');
    expect((await runTl(['export', 'mobilenet_v2_035', '--no-top', '--weights', 'random', '--input-size', '32', '--out', backbone], { TL_HOME: home })).exitCode).toBe(0);
    const refused = await runTl(['predict', '--model', backbone, ...images], { TL_HOME: home });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`${backbone} is not a classifier tl exported: its metadata tl.labels is missing.`);
  });

  it('tl extract and tl rank of a run read images with the mode it was trained with, unless --resize says otherwise', async () => {
    // A wide image: --resize pad (the run's) keeps all three stripes, center-crop only the middle one.
    const wide = join(tempDir(), 'wide.png');
    const stripes = Buffer.alloc(80 * 20 * 3);
    for (let p = 0; p < 80 * 20; p++) stripes.set((p % 80) < 20 ? [250, 10, 10] : (p % 80) < 60 ? [10, 10, 250] : [10, 250, 10], p * 3);
    await sharp(stripes, { raw: { width: 80, height: 20, channels: 3 } }).png().toFile(wide);
    const features = async (...resize: string[]) => {
      const out = join(tempDir(), 'f.jsonl');
      const r = await runTl(['extract', wide, '--model', run, '--format', 'jsonl', '--out', out, ...resize, '-q'], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(0);
      return readFileSync(out, 'utf8');
    };
    const [byRun, pad, crop] = [await features(), await features('--resize', 'pad'), await features('--resize', 'center-crop')];
    expect(byRun).toBe(pad);
    expect(byRun).not.toBe(crop);
    // tl rank scores the run with its mode too, on wide images whose classes differ at the edges (where center-crop
    // does not look): the same scores as with --resize pad given, others with center-crop.
    const wideData = tempDir();
    for (const [c, edge] of [['a', [250, 10, 10]], ['b', [10, 250, 10]]] as const) {
      mkdirSync(join(wideData, c));
      for (let i = 0; i < 8; i++) {
        const px = Buffer.alloc(80 * 20 * 3);
        for (let p = 0; p < 80 * 20; p++) px.set((p % 80) < 20 || (p % 80) >= 60 ? edge.map((v) => v - 3 * i) : [10 + 5 * i, 10, 250], p * 3);
        await sharp(px, { raw: { width: 80, height: 20, channels: 3 } }).png().toFile(join(wideData, c, `${i}.png`));
      }
    }
    type Rank = { rows: { model: string; logme: number }[] };
    const rank = async (...resize: string[]) => {
      const r = await runTl(['rank', wideData, '--models', run, '--json', '--val', '0', '--test', '0', ...resize], { TL_HOME: home });
      expect(r.exitCode, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as Rank).rows[0]!.logme;
    };
    const [rankByRun, rankPad, rankCrop] = [await rank(), await rank('--resize', 'pad'), await rank('--resize', 'center-crop')];
    expect(rankByRun).toBe(rankPad);
    expect(rankByRun).not.toBe(rankCrop);
  }, 120_000);
});
