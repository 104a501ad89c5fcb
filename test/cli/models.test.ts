import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { tempDir } from '../helpers/tmp.js';

describe('tl models', () => {
  it('lists every variant with backbone figures and store status', async () => {
    const home = tempDir();
    const r = await runCli(['models', '--json'], { ...process.env, TL_HOME: home });
    expect(r.exitCode).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; params: number; layers: number; inStore: boolean; trainedOn: string }[];
    const resnet = rows.find((x) => x.name === 'resnet50')!;
    expect(resnet).toMatchObject({ params: 23_587_712, layers: 175, inStore: false });
    expect(rows.find((x) => x.name === 'mobilenet_v2.nsfwjs')!.trainedOn).toMatch(/nsfwjs/);
  });

  it('info --no-top --json gives the Keras layer table', async () => {
    const r = await runCli(['models', 'info', 'resnet50', '--no-top', '--json']);
    expect(r.exitCode).toBe(0);
    const info = JSON.parse(r.stdout) as { totalParams: number; inputShape: number[]; preprocess: string; layers: { index: number; name: string; className: string }[]; weights: unknown[] };
    expect(info.totalParams).toBe(23_587_712);
    expect(info.inputShape).toEqual([224, 224, 3]);
    expect(info.preprocess).toBe('caffe');
    expect(info.layers[140]).toMatchObject({ index: 140, name: 'conv4_block6_3_bn', className: 'BatchNormalization' });
    expect(info.weights.length).toBe(2);
  });

  it('an unknown name lists the known names', async () => {
    const r = await runCli(['models', 'info', 'vgg17']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Unknown model 'vgg17'. Known models: vgg16, vgg19/);
  });
});
