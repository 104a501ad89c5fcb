import { beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { decodeImage } from '../../src/data/decode.js';
import { preprocess } from '../../src/data/preprocess.js';
import { NSFWJS_LABELS } from '../../src/registry/mobilenet_v2.js';
import { loadPretrained } from '../../src/weights/index.js';
import { debianFile } from '../../scripts/debian.js';
import { tempDir } from '../helpers/tmp.js';

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

describe('mobilenet_v2.nsfwjs on a real photo', () => {
  it("classifies skimage's cat as the nsfwjs package itself does", async (ctx) => {
    const found = debianFile('python3-skimage', '/usr/lib/python3/dist-packages/skimage/data/chelsea.png');
    if (found.path === null) {
      console.warn(`skipping the real-photo check: ${found.reason}`);
      ctx.skip();
      return;
    }
    // The reference: nsfwjs's own loader and classify() on the decoded photo.
    const nsfwjs = await import('nsfwjs');
    const reference = await nsfwjs.load('MobileNetV2');
    const { data, info } = await sharp(found.path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const image = tf.tensor3d(new Int32Array(data), [info.height, info.width, 3], 'int32');
    const theirs = await reference.classify(image, 5);
    image.dispose();
    const theirProbs = Object.fromEntries(theirs.map((p) => [p.className, p.probability]));

    // tl: sharp decode, squash to 224 (nsfwjs resizes without cropping), raw01 preprocessing from the registry.
    const tl = await loadPretrained(tf, 'mobilenet_v2.nsfwjs', { includeTop: true, store: tempDir() });
    expect(tl.variant.preprocess).toBe('raw01');
    const pixels = await decodeImage(found.path, { size: 224, resize: 'squash', maxPixels: 1e8 });
    const probs = tf.tidy(() => tl.model.predict(preprocess(tf, tf.tensor4d(Float32Array.from(pixels), [1, 224, 224, 3]), tl.variant.preprocess)) as ReturnType<Tf['zeros']>);
    const ours = Array.from(await probs.data());
    probs.dispose();
    tl.model.dispose();

    const ourTop = NSFWJS_LABELS[ours.indexOf(Math.max(...ours))];
    expect(ourTop).toBe(theirs[0]!.className);
    NSFWJS_LABELS.forEach((label, i) => expect(Math.abs(ours[i]! - theirProbs[label]!), label).toBeLessThan(0.03));
  });
});
