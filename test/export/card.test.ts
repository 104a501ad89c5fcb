// A model tl writes says how to feed it: tl.json beside every TensorFlow.js model (a run's and an export's) and the
// same facts in model.onnx's metadata, from one schema.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import { beforeAll, describe, expect, it } from 'vitest';
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
});
