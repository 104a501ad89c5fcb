// VGG16 and VGG19, layer for layer as tf.keras.applications.VGG16/VGG19.
// Paper: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition" (ICLR 2015).
// Reference implementation: keras/applications/vgg16.py, vgg19.py.
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import type { Family, Variant } from './types.js';

const KERAS_BASE = 'https://storage.googleapis.com/tensorflow/keras-applications/';

function build(tf: Tf, variant: Variant, opts: { includeTop: boolean; classes: number; inputSize: number }): LayersModel {
  const L = tf.layers;
  const convsPerBlock = [2, 2, variant.args['deep'] ?? 3, variant.args['deep'] ?? 3, variant.args['deep'] ?? 3];
  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input' });
  let x: SymbolicTensor = input;
  convsPerBlock.forEach((convs, b) => {
    const filters = Math.min(512, 64 * 2 ** b);
    for (let c = 1; c <= convs; c++) {
      x = L.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', name: `block${b + 1}_conv${c}` }).apply(x) as SymbolicTensor;
    }
    x = L.maxPooling2d({ poolSize: 2, strides: 2, name: `block${b + 1}_pool` }).apply(x) as SymbolicTensor;
  });
  if (opts.includeTop) {
    x = L.flatten({ name: 'flatten' }).apply(x) as SymbolicTensor;
    x = L.dense({ units: 4096, activation: 'relu', name: 'fc1' }).apply(x) as SymbolicTensor;
    x = L.dense({ units: 4096, activation: 'relu', name: 'fc2' }).apply(x) as SymbolicTensor;
    x = L.dense({ units: opts.classes, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  }
  return tf.model({ inputs: input, outputs: x, name: variant.name });
}

function variant(name: 'vgg16' | 'vgg19', deep: number, hashes: [string, string], backbone: Variant['backbone']): Variant {
  return {
    name,
    family: 'vgg',
    keras: name === 'vgg16' ? 'VGG16' : 'VGG19',
    inputSize: 224,
    preprocess: 'caffe',
    args: { deep },
    backbone,
    topClasses: 1000,
    weights: [
      { kind: 'keras-h5', url: `${KERAS_BASE}${name}/${name}_weights_tf_dim_ordering_tf_kernels.h5`, hash: hashes[0], includeTop: true },
      { kind: 'keras-h5', url: `${KERAS_BASE}${name}/${name}_weights_tf_dim_ordering_tf_kernels_notop.h5`, hash: hashes[1], includeTop: false },
    ],
    trainedOn: 'ImageNet-1k (Keras applications)',
    license: 'CC BY 4.0 (Oxford VGG weights, converted by Keras)',
    origin: `https://github.com/keras-team/keras/blob/master/keras/src/applications/${name}.py`,
  };
}

export const vgg: Family = {
  name: 'vgg',
  blockEnd: /^block\d_pool$/,
  paper: 'https://arxiv.org/abs/1409.1556',
  build,
  variants: [
    variant('vgg16', 3, ['64373286793e3c8b2b4e3219cbf3544b', '6d6bbae143d832006294945121d1f1fc'], { params: 14_714_688, layers: 19 }),
    variant('vgg19', 4, ['cbe5617147190e668d6c5d5026f83318', '253f8cb515780f3b799900260a226db6'], { params: 20_024_384, layers: 22 }),
  ],
};
