// MobileNetV3 Small and Large, layer for layer as tf.keras.applications.MobileNetV3Small/Large.
// Paper: Howard et al., "Searching for MobileNetV3" (ICCV 2019).
// Reference implementation: keras/applications/mobilenet_v3.py (tf.keras 2.x, with its TFOpLambda layers).
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import { customLayers, kerasAutoNamer } from './layers.js';
import { correctPad, makeDivisible } from './mobilenet_v2.js';
import type { Family, Variant } from './types.js';

const KERAS_BASE = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/';

type Activation = 'relu' | 'hard_swish';
/** [expansion, filters, kernel, stride, squeeze-excite, activation]; kernel 0 = the model's (5, or 3 if minimalistic). */
type Block = [number, number, number, number, boolean, Activation];

const SMALL: readonly Block[] = [
  [1, 16, 3, 2, true, 'relu'],
  [72 / 16, 24, 3, 2, false, 'relu'],
  [88 / 24, 24, 3, 1, false, 'relu'],
  [4, 40, 0, 2, true, 'hard_swish'],
  [6, 40, 0, 1, true, 'hard_swish'],
  [6, 40, 0, 1, true, 'hard_swish'],
  [3, 48, 0, 1, true, 'hard_swish'],
  [3, 48, 0, 1, true, 'hard_swish'],
  [6, 96, 0, 2, true, 'hard_swish'],
  [6, 96, 0, 1, true, 'hard_swish'],
  [6, 96, 0, 1, true, 'hard_swish'],
];

const LARGE: readonly Block[] = [
  [1, 16, 3, 1, false, 'relu'],
  [4, 24, 3, 2, false, 'relu'],
  [3, 24, 3, 1, false, 'relu'],
  [3, 40, 0, 2, true, 'relu'],
  [3, 40, 0, 1, true, 'relu'],
  [3, 40, 0, 1, true, 'relu'],
  [6, 80, 3, 2, false, 'hard_swish'],
  [2.5, 80, 3, 1, false, 'hard_swish'],
  [2.3, 80, 3, 1, false, 'hard_swish'],
  [2.3, 80, 3, 1, false, 'hard_swish'],
  [6, 112, 3, 1, true, 'hard_swish'],
  [6, 112, 3, 1, true, 'hard_swish'],
  [6, 160, 0, 2, true, 'hard_swish'],
  [6, 160, 0, 1, true, 'hard_swish'],
  [6, 160, 0, 1, true, 'hard_swish'],
];

function build(tf: Tf, variant: Variant, opts: { includeTop: boolean; classes: number; inputSize: number }): LayersModel {
  const alpha = variant.args['alpha'] ?? 1;
  const large = variant.args['large'] === 1;
  const L = tf.layers;
  const { GlobalAveragePooling2D, TFOpLambda } = customLayers(tf);
  // Keras names unnamed layers with a per-class counter: re_lu, re_lu_1, ...
  const auto = kerasAutoNamer();
  const apply = (layer: { apply(x: SymbolicTensor | SymbolicTensor[]): unknown }, x: SymbolicTensor | SymbolicTensor[]) => layer.apply(x) as SymbolicTensor;
  const bn = (name: string) => L.batchNormalization({ axis: -1, epsilon: 1e-3, momentum: 0.999, name });
  const hardSigmoid = (x: SymbolicTensor) => {
    let y = apply(new TFOpLambda({ op: 'add', operand: 3, name: auto('tf.__operators__.add') }), x);
    y = apply(L.reLU({ maxValue: 6, name: auto('re_lu') }), y);
    return apply(new TFOpLambda({ op: 'multiply', operand: 1 / 6, name: auto('tf.math.multiply') }), y);
  };
  const activate = (x: SymbolicTensor, kind: Activation) =>
    kind === 'relu' ? apply(L.reLU({ name: auto('re_lu') }), x) : apply(L.multiply({ name: auto('multiply') }), [x, hardSigmoid(x)]);

  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input' });
  let size = opts.inputSize;
  let x = apply(L.rescaling({ scale: 1 / 127.5, offset: -1, name: 'rescaling' }), input);
  x = apply(L.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', useBias: false, name: 'Conv' }), x);
  size = Math.ceil(size / 2);
  x = apply(bn('Conv/BatchNorm'), x);
  x = activate(x, 'hard_swish');

  (large ? LARGE : SMALL).forEach(([expansion, filtersIn, kernelIn, stride, se, act], blockId) => {
    const kernel = kernelIn === 0 ? 5 : kernelIn;
    const filters = makeDivisible(filtersIn * alpha);
    const shortcut = x;
    const inFilters = x.shape[3] as number;
    let prefix = 'expanded_conv/';
    if (blockId > 0) {
      prefix = `expanded_conv_${blockId}/`;
      x = apply(L.conv2d({ filters: makeDivisible(inFilters * expansion), kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}expand` }), x);
      x = apply(bn(`${prefix}expand/BatchNorm`), x);
      x = activate(x, act);
    }
    if (stride === 2) {
      const pad = correctPad(size, kernel);
      x = apply(L.zeroPadding2d({ padding: pad, name: `${prefix}depthwise/pad` }), x);
      size = Math.floor((size + pad[0][0] + pad[0][1] - kernel) / 2) + 1;
    }
    x = apply(L.depthwiseConv2d({ kernelSize: kernel, strides: stride, padding: stride === 1 ? 'same' : 'valid', useBias: false, name: `${prefix}depthwise` }), x);
    x = apply(bn(`${prefix}depthwise/BatchNorm`), x);
    x = activate(x, act);
    if (se) {
      const channels = makeDivisible(inFilters * expansion);
      const blockOut = x;
      let s = apply(new GlobalAveragePooling2D({ keepdims: true, name: `${prefix}squeeze_excite/AvgPool` }), x);
      s = apply(L.conv2d({ filters: makeDivisible(channels * 0.25), kernelSize: 1, padding: 'same', name: `${prefix}squeeze_excite/Conv` }), s);
      s = apply(L.reLU({ name: `${prefix}squeeze_excite/Relu` }), s);
      s = apply(L.conv2d({ filters: channels, kernelSize: 1, padding: 'same', name: `${prefix}squeeze_excite/Conv_1` }), s);
      s = hardSigmoid(s);
      x = apply(L.multiply({ name: `${prefix}squeeze_excite/Mul` }), [blockOut, s]);
    }
    x = apply(L.conv2d({ filters, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}project` }), x);
    x = apply(bn(`${prefix}project/BatchNorm`), x);
    if (stride === 1 && inFilters === filters) x = apply(L.add({ name: `${prefix}Add` }), [shortcut, x]);
  });

  const lastConv = makeDivisible((x.shape[3] as number) * 6);
  const lastPoint = alpha > 1 ? makeDivisible((large ? 1280 : 1024) * alpha) : large ? 1280 : 1024;
  x = apply(L.conv2d({ filters: lastConv, kernelSize: 1, padding: 'same', useBias: false, name: 'Conv_1' }), x);
  x = apply(bn('Conv_1/BatchNorm'), x);
  x = activate(x, 'hard_swish');
  if (opts.includeTop) {
    x = apply(new GlobalAveragePooling2D({ keepdims: true, name: auto('global_average_pooling2d') }), x);
    x = apply(L.conv2d({ filters: lastPoint, kernelSize: 1, padding: 'same', useBias: true, name: 'Conv_2' }), x);
    x = activate(x, 'hard_swish');
    x = apply(L.dropout({ rate: 0.2, name: auto('dropout') }), x);
    x = apply(L.conv2d({ filters: opts.classes, kernelSize: 1, padding: 'same', name: 'Logits' }), x);
    x = apply(L.flatten({ name: auto('flatten') }), x);
    x = apply(L.activation({ activation: 'softmax', name: 'Predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: `MobilenetV3${large ? 'large' : 'small'}` });
}

function variant(name: string, large: boolean, params: number, layers: number): Variant {
  const kind = large ? 'large' : 'small';
  const stem = `${KERAS_BASE}weights_mobilenet_v3_${kind}_224_1.0_float`;
  return {
    name,
    family: 'mobilenet_v3',
    keras: large ? 'MobileNetV3Large' : 'MobileNetV3Small',
    inputSize: 224,
    // The network rescales to [-1, 1] itself (its first layer), so pixels go in as 0..255.
    preprocess: 'none',
    args: { alpha: 1, large: large ? 1 : 0 },
    backbone: { params, layers },
    topClasses: 1000,
    weights: [
      { kind: 'keras-h5', url: `${stem}.h5`, hash: null, includeTop: true },
      { kind: 'keras-h5', url: `${stem}_no_top_v2.h5`, hash: null, includeTop: false },
    ],
    trainedOn: 'ImageNet-1k (Keras applications)',
    license: 'Apache-2.0',
    origin: 'https://github.com/keras-team/keras/blob/master/keras/src/applications/mobilenet_v3.py',
  };
}

export const mobilenetV3: Family = {
  name: 'mobilenet_v3',
  blockEnd: /^(expanded_conv(_\d+)?\/(Add|project\/BatchNorm))$/,
  paper: 'https://arxiv.org/abs/1905.02244',
  build,
  variants: [variant('mobilenet_v3_small', false, 939_120, 229), variant('mobilenet_v3_large', true, 2_996_352, 263)],
};
