import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { buildVariant } from '../../src/registry/index.js';
import { initializeWeights } from '../../src/registry/init.js';
import { loadLayersModelFromFolder } from '../../src/weights/tfjs.js';
import { saveLayersModel } from '../../src/weights/save.js';
import { relativeError } from '../helpers/tensors.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

describe("tl's custom layers save and load back", () => {
  for (const name of ['mobilenet', 'mobilenet_v3_small', 'mobilenet_v3_large']) {
    it(`${name} with its top (keepdims pooling${name.includes('v3') ? ', TFOpLambda' : ''}) predicts the same after a round trip`, async () => {
      const model = buildVariant(tf, name, { includeTop: true, inputSize: 96 });
      initializeWeights(tf, model, 3);
      const dir = join(tempDir(), 'model');
      await saveLayersModel(tf, model, dir);
      const loaded = await loadLayersModelFromFolder(tf, join(dir, 'model.json'));
      expect(loaded.layers.map((l) => l.getClassName())).toEqual(model.layers.map((l) => l.getClassName()));
      const x = tf.randomUniform([2, 96, 96, 3], 0, 255, 'float32', 1);
      const a = model.predict(x) as ReturnType<Tf['zeros']>;
      const b = loaded.predict(x) as ReturnType<Tf['zeros']>;
      expect(relativeError(await a.data(), await b.data())).toBeLessThan(1e-6);
      tf.dispose([x, a, b]);
      model.dispose();
      loaded.dispose();
    });
  }
});
