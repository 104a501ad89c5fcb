import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { resolveVariant } from '../../src/registry/index.js';

// The Keras applications' layer tables (index, name, ...), kept in the repository.
function layerNames(file: string): string[] {
  const lines = readFileSync(new URL(`../fixtures/keras-applications/${file}`, import.meta.url), 'utf8').trim().split('\n').slice(1);
  return lines.map((l) => l.split('\t')[1]!);
}

describe("the registry's default fine-tuning points", () => {
  it('freeze exactly what their sources say, by Keras index', () => {
    // --freeze N freezes layers 0..N-1, so layer N is the first that trains.
    const resnet = resolveVariant('resnet50').variant.fineTuneFrom!.layers;
    expect(layerNames('tfk_ResNet50_notop.tsv')[resnet]).toBe('conv5_block1_1_conv');
    expect(layerNames('tfk_ResNet50_notop.tsv')[resnet - 1]).toBe('conv4_block6_out');
    // The Keras transfer-learning guide: base_model.layers[:100] frozen.
    expect(resolveVariant('mobilenet_v2').variant.fineTuneFrom!.layers).toBe(100);
    expect(layerNames('tfk_MobileNetV2_notop.tsv')[100]).toBe('block_11_expand_relu');
    for (const name of ['mobilenet_v2_035', 'mobilenet_v2.nsfwjs']) expect(resolveVariant(name).variant.fineTuneFrom!.layers).toBe(100);
    // Keras's fine-tuning example for InceptionV3: the first 249 layers frozen, the top two inception blocks (mixed9,
    // mixed10) train: layer 249 is the first after mixed8.
    const inception = resolveVariant('inception_v3').variant.fineTuneFrom!.layers;
    expect(layerNames('k3_InceptionV3_notop.tsv')[inception - 1]).toBe('mixed8');
    expect(layerNames('k3_InceptionV3_notop.tsv').slice(inception)).toContain('mixed9');
    expect(resolveVariant('vgg16').variant.fineTuneFrom).toBeUndefined();
  });
});
