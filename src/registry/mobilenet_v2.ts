// MobileNetV2, layer for layer as tf.keras.applications.MobileNetV2.
// Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018).
// Reference implementation: keras/applications/mobilenet_v2.py.
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import type { Family, Variant, WeightSource } from './types.js';

const KERAS_BASE = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/';

/** Keras's `_make_divisible`: round to a multiple of 8, never more than 10% down. */
export function makeDivisible(v: number, divisor = 8): number {
  let out = Math.max(divisor, Math.floor(Math.trunc(v + divisor / 2) / divisor) * divisor);
  if (out < 0.9 * v) out += divisor;
  return out;
}

/** Keras's `correct_pad` for a `kernel`x`kernel` stride-2 window on a square input of `size` (0 = unknown). */
export function correctPad(size: number, kernel = 3): [[number, number], [number, number]] {
  const adjust = size === 0 ? 1 : 1 - (size % 2);
  const correct = Math.floor(kernel / 2);
  return [
    [correct - adjust, correct],
    [correct - adjust, correct],
  ];
}

/** The 17 inverted residual blocks: [filters, stride, expansion]. */
const BLOCKS: readonly [number, number, number][] = [
  [16, 1, 1],
  [24, 2, 6], [24, 1, 6],
  [32, 2, 6], [32, 1, 6], [32, 1, 6],
  [64, 2, 6], [64, 1, 6], [64, 1, 6], [64, 1, 6],
  [96, 1, 6], [96, 1, 6], [96, 1, 6],
  [160, 2, 6], [160, 1, 6], [160, 1, 6],
  [320, 1, 6],
];

/** Labels of the nsfwjs classifier head. */
export const NSFWJS_LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'] as const;

/** The nsfwjs classifier that replaces Keras's top: average pool over the whole map, two hidden dense layers, softmax. */
export function attachNsfwjsHead(tf: Tf, input: SymbolicTensor, features: SymbolicTensor, classes: number, poolName: string, name: string): LayersModel {
  const L = tf.layers;
  const size = features.shape[1] as number;
  let x = L.averagePooling2d({ poolSize: size, strides: size, padding: 'valid', name: poolName }).apply(features) as SymbolicTensor;
  x = L.flatten({ name: 'flatten_1' }).apply(x) as SymbolicTensor;
  x = L.dense({ units: 256, activation: 'relu', name: 'dense_1' }).apply(x) as SymbolicTensor;
  x = L.dropout({ rate: 0.5, name: 'dropout_2' }).apply(x) as SymbolicTensor;
  x = L.dense({ units: 128, activation: 'relu', name: 'dense_2' }).apply(x) as SymbolicTensor;
  x = L.dropout({ rate: 0.25, name: 'dropout_3' }).apply(x) as SymbolicTensor;
  x = L.dense({ units: classes, activation: 'softmax', name: 'dense_3' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: x, name });
}

function build(tf: Tf, variant: Variant, opts: { includeTop: boolean; classes: number; inputSize: number }): LayersModel {
  const alpha = variant.args['alpha'] ?? 1;
  const L = tf.layers;
  const bn = (name: string) => L.batchNormalization({ axis: -1, epsilon: 1e-3, momentum: 0.999, name });
  const relu6 = (name: string) => L.reLU({ maxValue: 6, name });
  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input' });
  let size = opts.inputSize;

  let x = L.conv2d({ filters: makeDivisible(32 * alpha), kernelSize: 3, strides: 2, padding: 'same', useBias: false, name: 'Conv1' }).apply(input) as SymbolicTensor;
  size = Math.ceil(size / 2);
  x = bn('bn_Conv1').apply(x) as SymbolicTensor;
  x = relu6('Conv1_relu').apply(x) as SymbolicTensor;

  BLOCKS.forEach(([filters, stride, expansion], blockId) => {
    const inChannels = x.shape[3] as number;
    const pointwise = makeDivisible(Math.trunc(filters * alpha));
    const blockInput = x;
    let prefix = `block_${blockId}_`;
    if (blockId > 0) {
      x = L.conv2d({ filters: expansion * inChannels, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}expand` }).apply(x) as SymbolicTensor;
      x = bn(`${prefix}expand_BN`).apply(x) as SymbolicTensor;
      x = relu6(`${prefix}expand_relu`).apply(x) as SymbolicTensor;
    } else {
      prefix = 'expanded_conv_';
    }
    if (stride === 2) {
      x = L.zeroPadding2d({ padding: correctPad(size), name: `${prefix}pad` }).apply(x) as SymbolicTensor;
      size = Math.floor((size + (size % 2 === 0 ? 1 : 2) - 3) / 2) + 1;
    }
    x = L.depthwiseConv2d({ kernelSize: 3, strides: stride, useBias: false, padding: stride === 1 ? 'same' : 'valid', name: `${prefix}depthwise` }).apply(x) as SymbolicTensor;
    x = bn(`${prefix}depthwise_BN`).apply(x) as SymbolicTensor;
    x = relu6(`${prefix}depthwise_relu`).apply(x) as SymbolicTensor;
    x = L.conv2d({ filters: pointwise, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}project` }).apply(x) as SymbolicTensor;
    x = bn(`${prefix}project_BN`).apply(x) as SymbolicTensor;
    if (inChannels === pointwise && stride === 1) {
      x = L.add({ name: `${prefix}add` }).apply([blockInput, x]) as SymbolicTensor;
    }
  });

  const lastFilters = alpha > 1 ? makeDivisible(1280 * alpha) : 1280;
  x = L.conv2d({ filters: lastFilters, kernelSize: 1, useBias: false, name: 'Conv_1' }).apply(x) as SymbolicTensor;
  x = bn('Conv_1_bn').apply(x) as SymbolicTensor;
  x = relu6('out_relu').apply(x) as SymbolicTensor;

  if (opts.includeTop) {
    if (variant.head === 'nsfwjs') return attachNsfwjsHead(tf, input, x, opts.classes, 'average_pooling2d_1', 'mobilenetv2_nsfwjs');
    x = L.globalAveragePooling2d({ name: 'global_average_pooling2d' }).apply(x) as SymbolicTensor;
    x = L.dense({ units: opts.classes, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  }
  const rows = opts.inputSize;
  return tf.model({ inputs: input, outputs: x, name: `mobilenetv2_${alpha.toFixed(2)}_${rows}` });
}

function kerasWeights(alpha: number, rows: number): WeightSource[] {
  const a = Number.isInteger(alpha) ? alpha.toFixed(1) : String(alpha);
  const stem = `${KERAS_BASE}mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${a}_${rows}`;
  return [
    { kind: 'keras-h5', url: `${stem}.h5`, hash: null, includeTop: true },
    { kind: 'keras-h5', url: `${stem}_no_top.h5`, hash: null, includeTop: false },
  ];
}

const common = {
  family: 'mobilenet_v2',
  fineTuneFrom: { layers: 100, why: "Keras's transfer-learning guide (fine_tune_at = 100: blocks 11-16 train)" },
  keras: 'MobileNetV2',
  inputSize: 224,
  topClasses: 1000,
  license: 'Apache-2.0',
  origin: 'https://github.com/keras-team/keras/blob/master/keras/src/applications/mobilenet_v2.py',
} as const;

/** [name suffix, alpha, backbone parameters]; every alpha has 154 layers without the top. */
const ALPHAS: readonly [string, number, number][] = [['035', 0.35, 410_208], ['050', 0.5, 706_224], ['075', 0.75, 1_382_064], ['', 1.0, 2_257_984], ['130', 1.3, 3_766_048], ['140', 1.4, 4_363_712]];

export const mobilenetV2: Family = {
  name: 'mobilenet_v2',
  blockEnd: /^(Conv1_relu|expanded_conv_project_BN|block_\d+_(add|project_BN)|out_relu)$/,
  paper: 'https://arxiv.org/abs/1801.04381',
  build,
  variants: [
    ...ALPHAS.map(([suffix, alpha, params]): Variant => ({
      ...common,
      name: suffix === '' ? 'mobilenet_v2' : `mobilenet_v2_${suffix}`,
      preprocess: 'tf',
      args: { alpha },
      backbone: { params, layers: 154 },
      weights: kerasWeights(alpha, 224),
      trainedOn: 'ImageNet-1k (Keras applications)',
    })),
    {
      ...common,
      name: 'mobilenet_v2.nsfwjs',
      preprocess: 'raw01',
      args: { alpha: 1 },
      backbone: { params: 2_257_984, layers: 154 },
      head: 'nsfwjs',
      topClasses: 5,
      topLabels: NSFWJS_LABELS,
      weights: [{ kind: 'nsfwjs', model: 'mobilenet_v2', includeTop: true }],
      trainedOn: 'ImageNet-1k (Keras MobileNetV2) for blocks 0-10; blocks 11-16 and the head fine-tuned by nsfwjs on its 5-class image set (Drawing, Hentai, Neutral, Porn, Sexy); ships offline in the nsfwjs npm package',
      license: 'MIT (nsfwjs)',
      origin: 'https://www.npmjs.com/package/nsfwjs/v/4.4.0',
    },
  ],
};
