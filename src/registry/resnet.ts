// ResNet50/101/152 (v1), layer for layer as tf.keras.applications.ResNet50/101/152.
// Paper: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).
// Reference implementation: keras/applications/resnet.py.
import type { LayersModel, SymbolicTensor, Tf } from '../backend/index.js';
import type { Family, Variant } from './types.js';

const KERAS_BASE = 'https://storage.googleapis.com/tensorflow/keras-applications/resnet/';

/** Keras's published md5 hashes: [with top, without top]. */
const HASHES: Record<string, [string, string]> = {
  resnet50: ['2cb95161c43110f7111970584f804107', '4d473c1dd8becc155b73f8504c6f6626'],
  resnet101: ['f1aeb4b969a6efcfb50fad2f0c20cfc5', '88cf7a10940856eca736dc7b7e228a21'],
  resnet152: ['100835be76be38e30d865e96f2aaae62', 'ee4c566cf9a93f14d82f913c2dc6dd0c'],
};

/** Blocks per stage (conv2..conv5). */
/** Backbone parameters and layers (Keras's figures for include_top=False). */
const BACKBONE: Record<string, Variant['backbone']> = {
  resnet50: { params: 23_587_712, layers: 175 },
  resnet101: { params: 42_658_176, layers: 345 },
  resnet152: { params: 58_370_944, layers: 515 },
};

const STAGES: Record<string, [number, number, number, number]> = {
  resnet50: [3, 4, 6, 3],
  resnet101: [3, 4, 23, 3],
  resnet152: [3, 8, 36, 3],
};

function build(tf: Tf, variant: Variant, opts: { includeTop: boolean; classes: number; inputSize: number }): LayersModel {
  const L = tf.layers;
  const bn = (name: string) => L.batchNormalization({ axis: 3, epsilon: 1.001e-5, name });
  const relu = (name: string) => L.activation({ activation: 'relu', name });
  const apply = (layer: { apply(x: SymbolicTensor | SymbolicTensor[]): unknown }, x: SymbolicTensor | SymbolicTensor[]) => layer.apply(x) as SymbolicTensor;

  const block = (input: SymbolicTensor, filters: number, stride: number, convShortcut: boolean, name: string): SymbolicTensor => {
    let shortcut = input;
    if (convShortcut) {
      shortcut = apply(L.conv2d({ filters: 4 * filters, kernelSize: 1, strides: stride, name: `${name}_0_conv` }), input);
      shortcut = apply(bn(`${name}_0_bn`), shortcut);
    }
    let x = apply(L.conv2d({ filters, kernelSize: 1, strides: stride, name: `${name}_1_conv` }), input);
    x = apply(bn(`${name}_1_bn`), x);
    x = apply(relu(`${name}_1_relu`), x);
    x = apply(L.conv2d({ filters, kernelSize: 3, padding: 'same', name: `${name}_2_conv` }), x);
    x = apply(bn(`${name}_2_bn`), x);
    x = apply(relu(`${name}_2_relu`), x);
    x = apply(L.conv2d({ filters: 4 * filters, kernelSize: 1, name: `${name}_3_conv` }), x);
    x = apply(bn(`${name}_3_bn`), x);
    x = apply(L.add({ name: `${name}_add` }), [shortcut, x]);
    return apply(relu(`${name}_out`), x);
  };

  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input' });
  let x = apply(L.zeroPadding2d({ padding: [[3, 3], [3, 3]], name: 'conv1_pad' }), input);
  x = apply(L.conv2d({ filters: 64, kernelSize: 7, strides: 2, name: 'conv1_conv' }), x);
  x = apply(bn('conv1_bn'), x);
  x = apply(relu('conv1_relu'), x);
  x = apply(L.zeroPadding2d({ padding: [[1, 1], [1, 1]], name: 'pool1_pad' }), x);
  x = apply(L.maxPooling2d({ poolSize: 3, strides: 2, name: 'pool1_pool' }), x);

  const stages = [variant.args['stage2'], variant.args['stage3'], variant.args['stage4'], variant.args['stage5']] as number[];
  stages.forEach((blocks, s) => {
    const filters = 64 * 2 ** s;
    const name = `conv${s + 2}`;
    x = block(x, filters, s === 0 ? 1 : 2, true, `${name}_block1`);
    for (let b = 2; b <= blocks; b++) x = block(x, filters, 1, false, `${name}_block${b}`);
  });

  if (opts.includeTop) {
    x = apply(L.globalAveragePooling2d({ name: 'avg_pool' }), x);
    x = apply(L.dense({ units: opts.classes, activation: 'softmax', name: 'predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: variant.keras.toLowerCase() });
}

export const resnet: Family = {
  name: 'resnet',
  blockEnd: /^(pool1_pool|conv\d_block\d+_out|post_relu)$/,
  paper: 'https://arxiv.org/abs/1512.03385',
  build,
  variants: Object.entries(STAGES).map(([name, [s2, s3, s4, s5]]): Variant => {
    const [top, notop] = HASHES[name] as [string, string];
    return {
      name,
      family: 'resnet',
      keras: `ResNet${name.slice(6)}`,
      inputSize: 224,
      preprocess: 'caffe',
      args: { stage2: s2, stage3: s3, stage4: s4, stage5: s5 },
      backbone: BACKBONE[name] as Variant['backbone'],
      // conv5's first block has 12 layers, each later one 10.
      fineTuneFrom: { layers: (BACKBONE[name] as Variant['backbone']).layers - (12 + (s5 - 1) * 10), why: 'its last stage (conv5) trains, the rest keeps its ImageNet features' },
      topClasses: 1000,
      weights: [
        { kind: 'keras-h5', url: `${KERAS_BASE}${name}_weights_tf_dim_ordering_tf_kernels.h5`, hash: top, includeTop: true },
        { kind: 'keras-h5', url: `${KERAS_BASE}${name}_weights_tf_dim_ordering_tf_kernels_notop.h5`, hash: notop, includeTop: false },
      ],
      trainedOn: 'ImageNet-1k (Keras applications)',
      license: 'MIT (Kaiming He\'s original weights, converted by Keras)',
      origin: 'https://github.com/keras-team/keras/blob/master/keras/src/applications/resnet.py',
    };
  }),
};
