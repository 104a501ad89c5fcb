// tl export --quantize int8: a QDQ model ONNX Runtime runs with integer convolutions, calibrated on the run's own
// training images, answering as the float32 model does, and saying how it compares on the run's test split.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { runTl } from '../helpers/cli.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const data = tempDir();
const home = tempDir();
const run = join(tempDir(), 'run');
beforeAll(async () => {
  await makeColourDataset(data, 3, 12, 48);
  const r = await runTl(['finetune', data, '--input-size', '48', '--freeze', '100', '--epochs', '2', '--batch-size', '8', '--calibrate', 'none', '--out', run, '-q'], { TL_HOME: home });
  expect(r.exitCode, r.stderr).toBe(0);
}, 180_000);

const ops = (bytes: Uint8Array) => onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType);

describe('--quantize int8', () => {
  it('writes a quarter-size QDQ model that ONNX Runtime runs with integer convolutions and that answers as float32 does', async () => {
    const full = join(tempDir(), 'f.onnx');
    const q = join(tempDir(), 'q.onnx');
    expect((await runTl(['export', run, '--out', full], { TL_HOME: home })).exitCode).toBe(0);
    const r = await runTl(['export', run, '--out', q, '--quantize', 'int8', '--calibration-images', '16', '--json'], { TL_HOME: home });
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { int8: { convolutions: number; activations: number; calibrationImages: number; check: { images: number; agreement: number; float32: { accuracy: number }; int8: { accuracy: number } } } };
    const [a, b] = [new Uint8Array(readFileSync(full)), new Uint8Array(readFileSync(q))];
    expect(b.length / a.length).toBeLessThan(0.35);
    expect(result.int8.calibrationImages).toBe(16);
    expect(result.int8.convolutions).toBe(ops(a).filter((o) => o === 'Conv').length);
    // The zero Pads before strided convolutions became the convolutions' own padding.
    expect(ops(b)).not.toContain('Pad');
    const meta = Object.fromEntries(onnx.ModelProto.decode(b).metadataProps!.map((p) => [p.key, p.value]));
    expect(meta['tl.quantization']).toMatch(/^int8 QDQ: \d+ convolutions/);
    expect(meta['tl.labels']).toBe(JSON.stringify(['class0', 'class1', 'class2']));
    // ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv: the convolutions run on integers.
    const optimized = join(tempDir(), 'opt.onnx');
    const session = await ort.InferenceSession.create(b, { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await session.release();
    const fused = ops(new Uint8Array(readFileSync(optimized)));
    expect(fused.filter((o) => o === 'QLinearConv').length).toBe(result.int8.convolutions);
    expect(fused).not.toContain('Conv');
    // On the dataset's images: the same top-1 label, probabilities within a tenth of float32's (16 calibration images).
    const images = [0, 1, 2, 3, 4, 5].map((i) => join(data, `class${i % 3}`, `img${i}.png`));
    const predict = async (model: string) => {
      const p = await runTl(['predict', '--model', model, ...images, '--top', '3', '--json'], { TL_HOME: home });
      expect(p.exitCode, p.stderr).toBe(0);
      return (JSON.parse(p.stdout) as { predictions: { top: { class: string; probability: number }[] }[] }).predictions.map((x) => Object.fromEntries(x.top.map((t) => [t.class, t.probability])));
    };
    const [pf, pq] = [await predict(full), await predict(q)];
    const top1 = (p: Record<string, number>) => Object.entries(p).sort((x, y) => y[1] - x[1])[0]![0];
    expect(pq.map(top1)).toEqual(pf.map(top1));
    const diff = Math.max(...pf.flatMap((p, i) => Object.keys(p).map((c) => Math.abs(p[c]! - pq[i]![c]!))));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.1);
    // The check ran on the run's test split and agrees with what the float32 model scores there.
    const split = JSON.parse(readFileSync(join(run, 'split.json'), 'utf8')) as { files: Record<string, string> };
    expect(result.int8.check.images).toBe(Object.values(split.files).filter((s) => s === 'test').length);
    expect(result.int8.check.agreement).toBeGreaterThanOrEqual(0.9);
  });

  it('is refused, with what to pass, for a model without a training split', async () => {
    const r = await runTl(['export', 'mobilenet_v2_035', '--weights', 'random', '--input-size', '32', '--out', join(tempDir(), 'q.onnx'), '--quantize', 'int8'], { TL_HOME: home });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/has no training split|no tl metadata/);
    const t = await runTl(['export', run, '--format', 'tfjs', '--out', join(tempDir(), 't'), '--quantize', 'int8'], { TL_HOME: home });
    expect(t.exitCode).toBe(2);
    expect(t.stderr).toContain('--quantize int8 applies to ONNX exports');
  });
});
