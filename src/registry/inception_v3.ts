// InceptionV3, layer for layer as tf.keras.applications.InceptionV3.
// Paper: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016).
// Reference implementation: keras/applications/inception_v3.py.
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { attachNsfwjsHead, NSFWJS_LABELS } from './mobilenet_v2.js';
import { kerasAutoNamer } from './layers.js';
import type { Family, Variant } from './types.js';

const KERAS_BASE = 'https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/';

function build(tf: Tf, variant: Variant, opts: { includeTop: boolean; classes: number; inputSize: number }): LayersModel {
  const L = tf.layers;
  const auto = kerasAutoNamer();
  const apply = (layer: { apply(x: SymbolicTensor | SymbolicTensor[]): unknown }, x: SymbolicTensor | SymbolicTensor[]) => layer.apply(x) as SymbolicTensor;
  const convBn = (x: SymbolicTensor, filters: number, rows: number, cols: number, padding: 'same' | 'valid' = 'same', strides = 1) => {
    let y = apply(L.conv2d({ filters, kernelSize: [rows, cols], strides, padding, useBias: false, name: auto('conv2d') }), x);
    y = apply(L.batchNormalization({ axis: 3, scale: false, name: auto('batch_normalization') }), y);
    return apply(L.activation({ activation: 'relu', name: auto('activation') }), y);
  };
  const maxPool = (x: SymbolicTensor) => apply(L.maxPooling2d({ poolSize: 3, strides: 2, name: auto('max_pooling2d') }), x);
  const avgPool = (x: SymbolicTensor) => apply(L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same', name: auto('average_pooling2d') }), x);
  const concat = (xs: SymbolicTensor[], name?: string) => apply(L.concatenate({ axis: 3, name: name ?? auto('concatenate') }), xs);

  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input' });
  let x = convBn(input, 32, 3, 3, 'valid', 2);
  x = convBn(x, 32, 3, 3, 'valid');
  x = convBn(x, 64, 3, 3);
  x = maxPool(x);
  x = convBn(x, 80, 1, 1, 'valid');
  x = convBn(x, 192, 3, 3, 'valid');
  x = maxPool(x);

  // mixed0-2: 35x35
  for (const [i, poolFilters] of [32, 64, 64].entries()) {
    const b1 = convBn(x, 64, 1, 1);
    const b5 = convBn(convBn(x, 48, 1, 1), 64, 5, 5);
    const b3 = convBn(convBn(convBn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3);
    const bp = convBn(avgPool(x), poolFilters, 1, 1);
    x = concat([b1, b5, b3, bp], `mixed${i}`);
  }
  // mixed3: 17x17
  {
    const b3 = convBn(x, 384, 3, 3, 'valid', 2);
    const bd = convBn(convBn(convBn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 'valid', 2);
    const bp = maxPool(x);
    x = concat([b3, bd, bp], 'mixed3');
  }
  // mixed4-7: 17x17
  for (const [i, c] of [128, 160, 160, 192].entries()) {
    const b1 = convBn(x, 192, 1, 1);
    const b7 = convBn(convBn(convBn(x, c, 1, 1), c, 1, 7), 192, 7, 1);
    const bd = convBn(convBn(convBn(convBn(convBn(x, c, 1, 1), c, 7, 1), c, 1, 7), c, 7, 1), 192, 1, 7);
    const bp = convBn(avgPool(x), 192, 1, 1);
    x = concat([b1, b7, bd, bp], `mixed${4 + i}`);
  }
  // mixed8: 8x8
  {
    const b3 = convBn(convBn(x, 192, 1, 1), 320, 3, 3, 'valid', 2);
    const b7 = convBn(convBn(convBn(convBn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 'valid', 2);
    const bp = maxPool(x);
    x = concat([b3, b7, bp], 'mixed8');
  }
  // mixed9-10: 8x8
  for (let i = 0; i < 2; i++) {
    const b1 = convBn(x, 320, 1, 1);
    const b3 = convBn(x, 384, 1, 1);
    const b3cat = concat([convBn(b3, 384, 1, 3), convBn(b3, 384, 3, 1)], `mixed9_${i}`);
    const bd = convBn(convBn(x, 448, 1, 1), 384, 3, 3);
    const bdcat = concat([convBn(bd, 384, 1, 3), convBn(bd, 384, 3, 1)]);
    const bp = convBn(avgPool(x), 192, 1, 1);
    x = concat([b1, b3cat, bdcat, bp], `mixed${9 + i}`);
  }
  if (opts.includeTop) {
    if (variant.head === 'nsfwjs') return attachNsfwjsHead(tf, input, x, opts.classes, 'average_pooling2d_10', 'inception_v3_nsfwjs');
    x = apply(L.globalAveragePooling2d({ name: 'avg_pool' }), x);
    x = apply(L.dense({ units: opts.classes, activation: 'softmax', name: 'predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: 'inception_v3' });
}

const common = {
  family: 'inception_v3',
  fineTuneFrom: { layers: 249, why: "Keras applications' InceptionV3 fine-tuning example (the top two inception blocks train)" },
  keras: 'InceptionV3',
  inputSize: 299,
  args: {},
  backbone: { params: 21_802_784, layers: 311 },
  topClasses: 1000,
} as const;

export const inceptionV3: Family = {
  name: 'inception_v3',
  blockEnd: /^(max_pooling2d_1|mixed\d+)$/,
  paper: 'https://arxiv.org/abs/1512.00567',
  build,
  variants: [
    {
      ...common,
      name: 'inception_v3',
      preprocess: 'tf',
      weights: [
        { kind: 'keras-h5', url: `${KERAS_BASE}inception_v3_weights_tf_dim_ordering_tf_kernels.h5`, hash: '9a0d58056eeedaa3f26cb7ebd46da564', includeTop: true },
        { kind: 'keras-h5', url: `${KERAS_BASE}inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`, hash: 'bcbd6486424b2319ff4ef7d526e38f63', includeTop: false },
      ],
      trainedOn: 'ImageNet-1k (Keras applications)',
      license: 'Apache-2.0',
      origin: 'https://github.com/keras-team/keras/blob/master/keras/src/applications/inception_v3.py',
    },
    {
      ...common,
      name: 'inception_v3.nsfwjs',
      preprocess: 'raw01',
      head: 'nsfwjs',
      topClasses: 5,
      topLabels: NSFWJS_LABELS,
      weights: [{ kind: 'nsfwjs', model: 'inception_v3', includeTop: true, keras2AutoNames: true }],
      trainedOn: 'ImageNet-1k (Keras InceptionV3) for the first 167 layers; the rest and the head fine-tuned by nsfwjs on its 5-class image set (Drawing, Hentai, Neutral, Porn, Sexy); ships offline in the nsfwjs npm package',
      license: 'MIT (nsfwjs)',
      origin: 'https://www.npmjs.com/package/nsfwjs/v/4.4.0',
    },
  ],
};
