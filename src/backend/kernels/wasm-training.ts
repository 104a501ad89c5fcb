// Gradient kernels the wasm backend lacks or gets wrong, written with ordinary tf ops so XNNPACK does the work.
//
// tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter or
// DepthwiseConv2dNativeBackpropInput; its MaxPoolGrad is wrong when channels > 1; its Conv2DBackpropInput is a
// naive loop; its BatchMatMul with a transposed operand is far slower than transposing first. Layers use fused ops
// whose backward calls these kernels directly, so they are replaced at the kernel level (tf.registerKernel).
import type * as tfTypes from '@tensorflow/tfjs';

type Tf = typeof tfTypes;
type Tensor = tfTypes.Tensor;
type Tensor4D = tfTypes.Tensor4D;
type KernelConfig = tfTypes.KernelConfig;
type TensorInfo = tfTypes.TensorInfo;
type Conv2DInfo = ReturnType<Tf['backend_util']['computeConv2DInfo']>;

type PadMode = 'valid' | 'same' | number | tfTypes.backend_util.ExplicitPadding;

interface ConvAttrs {
  strides: number | [number, number];
  pad: PadMode;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dataFormat?: 'NHWC' | 'NCHW';
}

function isTensor(t: TensorInfo): t is Tensor {
  return (t as Partial<Tensor>).rank !== undefined;
}

/** Pads (positive) or crops (negative) an axis of a rank-4 tensor at both ends. */
function padOrCrop(tf: Tf, t: Tensor4D, axis: 1 | 2, before: number, after: number): Tensor4D {
  let out = t;
  if (before < 0 || after < 0) {
    const begin = [0, 0, 0, 0];
    const size = [...out.shape] as number[];
    begin[axis] = Math.max(0, -before);
    size[axis] = (size[axis] ?? 0) - Math.max(0, -before) - Math.max(0, -after);
    out = tf.slice(out, begin, size);
  }
  if (before > 0 || after > 0) {
    const pads: [number, number][] = [[0, 0], [0, 0], [0, 0], [0, 0]];
    pads[axis] = [Math.max(0, before), Math.max(0, after)];
    out = tf.pad(out, pads);
  }
  return out;
}

/** Inserts stride-1 zeros between rows and columns: [N,H,W,C] -> [N,(H-1)*sh+1,(W-1)*sw+1,C]. */
function zeroInsert(tf: Tf, t: Tensor4D, sh: number, sw: number): Tensor4D {
  if (sh === 1 && sw === 1) return t;
  const [n, h, w, c] = t.shape;
  // Interleaving one axis at a time keeps every tensor rank 4 (what the wasm Pad kernel handles fastest).
  let out: Tensor4D = t;
  if (sh > 1) {
    out = tf.reshape(tf.pad(tf.reshape(out, [n * h, 1, w, c]), [[0, 0], [0, sh - 1], [0, 0], [0, 0]]), [n, h * sh, w, c]);
    out = tf.slice(out, [0, 0, 0, 0], [n, (h - 1) * sh + 1, w, c]);
  }
  if (sw > 1) {
    const hh = out.shape[1];
    out = tf.reshape(tf.pad(tf.reshape(out, [n * hh, w, 1, c]), [[0, 0], [0, 0], [0, sw - 1], [0, 0]]), [n, hh, w * sw, c]);
    out = tf.slice(out, [0, 0, 0, 0], [n, hh, (w - 1) * sw + 1, c]);
  }
  return out;
}

/** The input window that tap (i, j) of a strided, dilated filter sees, for every output position. */
function tapWindow(tf: Tf, xPad: Tensor4D, info: Conv2DInfo, i: number, j: number): Tensor4D {
  const [n, , , c] = xPad.shape;
  const top = i * info.dilationHeight;
  const left = j * info.dilationWidth;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = info;
  if (sh === 1 && sw === 1) {
    if (top === 0 && left === 0 && xPad.shape[1] === oh && xPad.shape[2] === ow) return xPad;
    return tf.slice(xPad, [0, top, left, 0], [n, oh, ow, c]);
  }
  return tf.stridedSlice(xPad, [0, top, left, 0], [n, top + (oh - 1) * sh + 1, left + (ow - 1) * sw + 1, c], [1, sh, sw, 1]) as Tensor4D;
}

/** The input padded as the forward convolution padded it (extra rows the window never reaches are harmless). */
function padInput(tf: Tf, x: Tensor4D, info: Conv2DInfo, value = 0): Tensor4D {
  const { top, bottom, left, right } = info.padInfo;
  if (top === 0 && bottom === 0 && left === 0 && right === 0) return x;
  return tf.pad(x, [[0, 0], [Math.max(0, top), Math.max(0, bottom)], [Math.max(0, left), Math.max(0, right)], [0, 0]], value);
}

function requireNHWC(kernel: string, attrs: { dataFormat?: string }): void {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC' && attrs.dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports NHWC only; received dataFormat=${attrs.dataFormat}`);
  }
}

/**
 * Input gradient of a (depthwise) convolution as a forward stride-1 convolution of the zero-inserted, padded dy
 * with the spatially flipped filter; runs on XNNPACK instead of a naive loop.
 */
function convInputGrad(tf: Tf, dy: Tensor4D, filter: tfTypes.Tensor4D, info: Conv2DInfo, depthwise: boolean): Tensor4D {
  const { filterHeight: fh, filterWidth: fw, dilationHeight: dh, dilationWidth: dw } = info;
  const [, inH, inW, inC] = info.inShape;
  let d = zeroInsert(tf, dy, info.strideHeight, info.strideWidth);
  const frontH = (fh - 1) * dh - info.padInfo.top;
  const frontW = (fw - 1) * dw - info.padInfo.left;
  d = padOrCrop(tf, d, 1, frontH, inH + (fh - 1) * dh - frontH - d.shape[1]);
  d = padOrCrop(tf, d, 2, frontW, inW + (fw - 1) * dw - frontW - d.shape[2]);
  const flipped = fh === 1 && fw === 1 ? filter : tf.reverse(filter, [0, 1]);
  const dilations: [number, number] = [dh, dw];
  if (!depthwise) {
    return tf.conv2d(d, tf.transpose(flipped, [0, 1, 3, 2]) as tfTypes.Tensor4D, 1, 'valid', 'NHWC', dilations);
  }
  const mult = filter.shape[3];
  const f = tf.reshape(flipped, [fh, fw, inC * mult, 1]) as tfTypes.Tensor4D;
  const out = tf.depthwiseConv2d(d, f, 1, 'valid', 'NHWC', dilations);
  if (mult === 1) return out;
  const [n] = out.shape;
  return tf.sum(tf.reshape(out, [n, inH, inW, inC, mult]), 4) as Tensor4D;
}

/** Filter gradient of a convolution: one matrix product per filter tap over that tap's window of the padded input. */
function convFilterGrad(tf: Tf, x: Tensor4D, dy: Tensor4D, info: Conv2DInfo): Tensor {
  const { filterHeight: fh, filterWidth: fw, inChannels: ci, outChannels: co } = info;
  const rows = dy.shape[0] * dy.shape[1] * dy.shape[2];
  // dy^T once, then dW_tap^T = dy^T x_tap: no transposed operand reaches the (slow) transposed BatchMatMul path.
  const dyT = tf.transpose(tf.reshape(dy, [rows, co]));
  const xPad = padInput(tf, x, info);
  const taps: Tensor[] = [];
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      const window = tf.reshape(tapWindow(tf, xPad, info, i, j), [rows, ci]);
      taps.push(tf.matMul(dyT, window));
    }
  }
  const stacked = tf.stack(taps); // [fh*fw, co, ci]
  return tf.reshape(tf.transpose(stacked, [0, 2, 1]), [fh, fw, ci, co]);
}

/**
 * Filter gradient of a depthwise convolution. With batch and channels folded together, the gradient is itself a
 * depthwise convolution: the padded input convolved with dy as the filter, the forward stride becoming the
 * dilation. One XNNPACK call instead of a product and a reduction per tap.
 */
function depthwiseFilterGrad(tf: Tf, x: Tensor4D, dy: Tensor4D, info: Conv2DInfo, mult: number): Tensor {
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  if (mult !== 1 || info.dilationHeight !== 1 || info.dilationWidth !== 1) return depthwiseFilterGradByTaps(tf, x, dy, info, mult);
  const ci = info.inChannels;
  const [n, oh, ow] = dy.shape;
  const needH = (oh - 1) * sh + fh;
  const needW = (ow - 1) * sw + fw;
  let xPad = padInput(tf, x, info);
  if (xPad.shape[1] !== needH || xPad.shape[2] !== needW) xPad = tf.slice(xPad, [0, 0, 0, 0], [n, needH, needW, ci]);
  const xFolded = tf.reshape(tf.transpose(xPad, [1, 2, 0, 3]), [1, needH, needW, n * ci]) as Tensor4D;
  const dyFolded = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [oh, ow, n * ci, 1]) as tfTypes.Tensor4D;
  const perImage = tf.depthwiseConv2d(xFolded, dyFolded, 1, 'valid', 'NHWC', [sh, sw]); // [1, fh, fw, n*ci]
  return tf.reshape(tf.sum(tf.reshape(perImage, [fh * fw, n, ci]), 1), [fh, fw, ci, 1]);
}

/** Depthwise filter gradient per tap (channel multipliers > 1 or dilated filters). */
function depthwiseFilterGradByTaps(tf: Tf, x: Tensor4D, dy: Tensor4D, info: Conv2DInfo, mult: number): Tensor {
  const { filterHeight: fh, filterWidth: fw } = info;
  const ci = info.inChannels;
  const [n, oh, ow] = dy.shape;
  const rows = n * oh * ow;
  const xPad = padInput(tf, x, info);
  const dyRows = tf.reshape(dy, [rows, ci, mult]);
  const ones = tf.ones([1, rows]);
  const taps: Tensor[] = [];
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      const window = tf.reshape(tapWindow(tf, xPad, info, i, j), [rows, ci, 1]);
      // Summing rows as a product with ones is XNNPACK work; a reduction over the leading axis is not.
      const prod = tf.reshape(tf.mul(window, dyRows), [rows, ci * mult]);
      taps.push(tf.reshape(tf.matMul(ones, prod), [ci, mult]));
    }
  }
  return tf.reshape(tf.stack(taps), [fh, fw, ci, mult]);
}

/**
 * Max-pool gradient: each output's gradient goes to the first maximum of its window in row-major order
 * (the cpu backend's rule, ties included).
 */
function maxPoolGrad(tf: Tf, dy: Tensor4D, x: Tensor4D, y: Tensor4D, info: Conv2DInfo): Tensor4D {
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const xPad = padInput(tf, x, info, Number.NEGATIVE_INFINITY);
  const [n, hp, wp, c] = xPad.shape;
  let taken: Tensor = tf.zerosLike(dy);
  let dxPad: Tensor4D = tf.zeros([n, hp, wp, c]);
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      const window = tapWindow(tf, xPad, info, i, j);
      const isMax = tf.mul(tf.cast(tf.equal(window, y), 'float32'), tf.sub(1, taken));
      taken = tf.add(taken, isMax);
      let contribution = zeroInsert(tf, tf.mul(dy, isMax) as Tensor4D, sh, sw);
      const top = i * info.dilationHeight;
      const left = j * info.dilationWidth;
      contribution = padOrCrop(tf, contribution, 1, top, hp - top - contribution.shape[1]);
      contribution = padOrCrop(tf, contribution, 2, left, wp - left - contribution.shape[2]);
      dxPad = tf.add(dxPad, contribution);
    }
  }
  const [, inH, inW] = x.shape;
  return tf.slice(dxPad, [0, Math.max(0, info.padInfo.top), Math.max(0, info.padInfo.left), 0], [n, inH, inW, c]);
}

function asPair(v: number | [number, number] | undefined): [number, number] {
  if (v === undefined) return [1, 1];
  return typeof v === 'number' ? [v, v] : v;
}

let registered = false;

type KernelRun = (kernel: string, inputs: Record<string, TensorInfo | undefined>, body: (t: Record<string, Tensor>) => Tensor) => Tensor;

/** Runs a kernel's body as tf ops on its inputs, inside a tidy. */
function kernelRunner(tf: Tf): KernelRun {
  return (kernel, inputs, body) => {
    // Inputs from other kernels may be bare TensorInfos; wrap them so tf ops accept them, and release the wrappers.
    const owned: Tensor[] = [];
    const tensors: Record<string, Tensor> = {};
    for (const [k, info] of Object.entries(inputs)) {
      if (info === undefined) continue;
      if (isTensor(info)) tensors[k] = info;
      else {
        const t = tf.engine().makeTensorFromTensorInfo(info);
        owned.push(t);
        tensors[k] = t;
      }
    }
    try {
      return tf.tidy(kernel, () => body(tensors));
    } finally {
      for (const t of owned) t.dispose();
    }
  };
}

/** The gradient kernels wasm lacks (convolutions, depthwise convolutions, max pooling), as compositions of tf ops. */
function gradientKernels(tf: Tf): KernelConfig[] {
  const bu = tf.backend_util;
  const run = kernelRunner(tf);
  return [
    {
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) => {
        const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
        requireNHWC('Conv2DBackpropFilter', a);
        return run('Conv2DBackpropFilter', inputs, ({ x, dy }) => {
          const info = bu.computeConv2DInfo((x as Tensor4D).shape, a.filterShape, a.strides, asPair(a.dilations), a.pad, a.dimRoundingMode);
          return convFilterGrad(tf, x as Tensor4D, dy as Tensor4D, info);
        });
      },
    },
    {
      kernelName: 'Conv2DBackpropInput',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) => {
        const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
        requireNHWC('Conv2DBackpropInput', a);
        return run('Conv2DBackpropInput', inputs, ({ dy, filter }) => {
          const f = filter as tfTypes.Tensor4D;
          const info = bu.computeConv2DInfo(a.inputShape, f.shape, a.strides, asPair(a.dilations), a.pad, a.dimRoundingMode);
          return convInputGrad(tf, dy as Tensor4D, f, info, false);
        });
      },
    },
    {
      kernelName: 'DepthwiseConv2dNativeBackpropFilter',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) => {
        const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
        return run('DepthwiseConv2dNativeBackpropFilter', inputs, ({ x, dy }) => {
          const info = bu.computeConv2DInfo((x as Tensor4D).shape, a.filterShape, a.strides, asPair(a.dilations), a.pad, a.dimRoundingMode, true);
          return depthwiseFilterGrad(tf, x as Tensor4D, dy as Tensor4D, info, a.filterShape[3]);
        });
      },
    },
    {
      kernelName: 'DepthwiseConv2dNativeBackpropInput',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) => {
        const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
        return run('DepthwiseConv2dNativeBackpropInput', inputs, ({ dy, filter }) => {
          const f = filter as tfTypes.Tensor4D;
          const info = bu.computeConv2DInfo(a.inputShape, f.shape, a.strides, asPair(a.dilations), a.pad, a.dimRoundingMode, true);
          return convInputGrad(tf, dy as Tensor4D, f, info, true);
        });
      },
    },
    {
      kernelName: 'MaxPoolGrad',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) => {
        const a = attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: PadMode; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
        return run('MaxPoolGrad', inputs, ({ dy, input, output }) => {
          const x = input as Tensor4D;
          const info = bu.computePool2DInfo(x.shape, a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
          return maxPoolGrad(tf, dy as Tensor4D, x, output as Tensor4D, info);
        });
      },
    },
  ];
}

/** wasm's BatchMatMul with transposed operands transposed first (10-25x faster than its transposed kernel). */
function batchMatMulKernel(tf: Tf, originalBatchMatMul: NonNullable<ReturnType<Tf['getKernel']>>): KernelConfig {
  return {
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: originalBatchMatMul.setupFunc,
    kernelFunc: (args) => {
      const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return originalBatchMatMul.kernelFunc(args);
      // Transposing an operand first is 10-25x faster than wasm's transposed BatchMatMul.
      const { a, b } = args.inputs as { a: Tensor; b: Tensor };
      const swap = (t: Tensor): Tensor => tf.transpose(t, [...t.shape.keys()].map((k, _, all) => (k < all.length - 2 ? k : all.length * 2 - 3 - k)));
      const aT = transposeA ? swap(a) : a;
      const bT = transposeB ? swap(b) : b;
      try {
        return originalBatchMatMul.kernelFunc({ ...args, inputs: { a: aT, b: bT }, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
      } finally {
        if (aT !== a) aT.dispose();
        if (bT !== b) bT.dispose();
      }
    },
  };
}

/** Registers tl's training kernels for the wasm backend; safe to call more than once. */
export function registerWasmTrainingKernels(tf: Tf): void {
  if (registered) return;
  const originalBatchMatMul = tf.getKernel('BatchMatMul', 'wasm');
  const configs = [...gradientKernels(tf), ...(originalBatchMatMul !== undefined ? [batchMatMulKernel(tf, originalBatchMatMul)] : [])];
  for (const config of configs) {
    if (tf.getKernel(config.kernelName, 'wasm') !== undefined) tf.unregisterKernel(config.kernelName, 'wasm');
    tf.registerKernel(config);
  }
  registered = true;
}
