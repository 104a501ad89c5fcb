import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { buildVariant } from '../../src/registry/index.js';
import { readKerasH5 } from '../../src/weights/h5.js';
import { assignKerasFile } from '../../src/weights/keras.js';
import { WeightsError } from '../../src/errors.js';
import { debianFile } from '../../scripts/debian.js';
import { relativeError } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';
import { writeKerasFile, type Layout } from '../helpers/keras-h5.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

describe('Keras HDF5 weights', () => {
  for (const layout of [
    { fullModel: false, colonZero: true, splitAttrs: false },
    { fullModel: true, colonZero: false, splitAttrs: false },
    { fullModel: false, colonZero: false, splitAttrs: true },
    { fullModel: true, colonZero: true, splitAttrs: true },
  ] satisfies Layout[]) {
    it(`round-trips ResNet50 weights (${layout.fullModel ? 'full model' : 'weights only'}, ${layout.colonZero ? 'kernel:0' : 'kernel'} names${layout.splitAttrs ? ', split layer_names' : ''})`, async () => {
      const source = buildVariant(tf, 'resnet50', { includeTop: false, inputSize: 64 });
      const file = join(tempDir(), 'w.h5');
      await writeKerasFile(file, source, layout);
      const target = buildVariant(tf, 'resnet50', { includeTop: false, inputSize: 64 });
      const report = await assignKerasFile(tf, target, file);
      expect(report.missing).toEqual([]);
      expect(report.assigned.length).toBe(source.layers.filter((l) => l.weights.length > 0).length);
      source.weights.forEach((w, i) => expect(relativeError(w.read().dataSync(), target.weights[i]!.read().dataSync())).toBe(0));
      source.dispose();
      target.dispose();
    });
  }

  it('a shape mismatch names the layer and both shapes', async () => {
    const source = buildVariant(tf, 'mobilenet_v2_035', { includeTop: false, inputSize: 64 });
    const file = join(tempDir(), 'w.h5');
    await writeKerasFile(file, source, { fullModel: false, colonZero: true, splitAttrs: false });
    const target = buildVariant(tf, 'mobilenet_v2_050', { includeTop: false, inputSize: 64 });
    const err = await assignKerasFile(tf, target, file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    // alpha 0.35 and 0.5 both start with 16 filters; the first difference is block_1's expansion.
    expect((err as Error).message).toMatch(/Shape mismatch for '(\w+)\/(\w+)' in .*w\.h5: the model expects \[[\d, ]+\], the weights have \[[\d, ]+\]/);
    source.dispose();
    target.dispose();
  });

  it('reads the real Keras 2.2.4 model shipped in Debian invesalius', async (ctx) => {
    const found = debianFile('invesalius', '/usr/share/invesalius/ai/brain_mri_t1/model.h5');
    if (found.path === null) {
      console.warn(`skipping the invesalius check: ${found.reason}`);
      ctx.skip();
      return;
    }
    const h5 = await readKerasH5(found.path);
    expect(h5.kerasVersion).toBe('2.2.4');
    // Build the network from the file's own config and load its weights by name.
    const config = h5.modelConfig as { config: unknown };
    const model = await tf.models.modelFromJSON({ modelTopology: { class_name: 'Model', config: config.config, keras_version: '2.2.4', backend: 'tensorflow' } } as never);
    const report = await assignKerasFile(tf, model, found.path);
    expect(report.assigned.length).toBeGreaterThan(5);
    expect(report.unused).toEqual([]);
    const kernel = h5.layers.get('conv3d_1')!.get('kernel')!;
    expect(kernel.shape).toEqual([5, 5, 5, 1, 8]);
    expect(relativeError(kernel.data, model.getLayer('conv3d_1').getWeights()[0]!.dataSync())).toBe(0);
    expect(model.weights.every((w) => w.read().dataSync().every(Number.isFinite))).toBe(true);
    model.dispose();
  });
});
