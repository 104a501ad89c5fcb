// Depthwise convolution on ONNX Runtime's blocked-channel (NCHWc) CPU kernels, with weights that arrive at run time.
// The forward pass and the input gradient are depthwise convolutions (the input gradient: the zero-upsampled output
// gradient against the flipped kernel); the weight gradient is one depthwise convolution of the batch folded into the
// channels, with the output gradient as its kernel. Each reads every activation once, where the gathered-taps form
// writes and reads nine times as much. Activations enter and leave the blocked layout [N, C/B, H, W, B] (labelled
// [N, C, H, W]; B is the CPU's block, 16 with AVX-512 and 8 with AVX2) through ReorderInput and ReorderOutput.
import { A } from '../graph.js';
import type { StepBuilder, Window } from './builder.js';

/** What the NCHWc lowering needs to know of the machine and the run. */
export interface NchwcTarget {
  /** ONNX Runtime's NCHWc block size on this CPU. */
  block: number;
  /**
   * The largest batch the step takes: the weight gradient folds the batch into the channels, and a convolution's
   * group count is fixed in the graph, so a smaller batch is padded with zero images (which add nothing to it).
   */
  batch: number;
  /**
   * Every batch has exactly `batch` images (the trainer pads short ones with zero rows of weight 0): the fold needs no
   * padding, which copies the activations it pads.
   */
  exact?: boolean;
}

const along = (win: Window, axis: 0 | 1) => ({
  size: axis === 0 ? win.h : win.w,
  k: axis === 0 ? win.kh : win.kw,
  out: axis === 0 ? win.ho : win.wo,
  s: win.stride[axis]!,
  d: win.dilation[axis]!,
  begin: win.pads[axis]!,
  end: win.pads[axis + 2]!,
});

/** Padding of the input gradient's convolution over the upsampled output gradient, per spatial axis: [begin, end]. */
function inputGradientPads(win: Window, axis: 0 | 1): [number, number] {
  const { size, k, out, s, d, begin } = along(win, axis);
  // The upsampled gradient has out * s rows; the convolution's output must have `size`.
  return [(k - 1) * d - begin, size - out * s + begin];
}

/** Whether the window runs on the NCHWc kernels: channels that ReorderInput takes (a multiple of 4), pads >= 0. */
export function nchwcFits(win: Window): boolean {
  return win.c % 4 === 0 && ([0, 1] as const).every((a) => inputGradientPads(win, a).every((p) => p >= 0));
}

/**
 * A depthwise convolution (multiplier 1) of NHWC `x` with `kernel` (values [kh, kw, c], any shape holding them):
 * its NHWC output, and its backward pass giving the NHWC input gradient and the kernel gradient [kh, kw, c].
 */
export function depthwiseNchwc(g: StepBuilder, x: string, win: Window, kernel: string, target: NchwcTarget) {
  const { c, kh, kw, h, w, ho, wo } = win;
  const B = target.block;
  const cp = Math.ceil(c / B) * B;
  const blocks = cp / B;
  // The kernel in the blocked filter layout [cp / B, kh, kw, B] (labelled [cp, 1, kh, kw]); padded channels are 0.
  const k3 = g.reshape(kernel, [kh, kw, c]);
  const taps = g.transpose(g.reshape(cp === c ? k3 : g.op('Pad', [k3, g.ints([0, 0, 0, 0, 0, cp - c])]), [kh, kw, blocks, B]), [2, 0, 1, 3]);
  const filter = g.reshape(taps, [cp, 1, kh, kw]);
  const toBlocked = (t: string) => g.nchwc('ReorderInput', [t], [A.int('channels_last', 1)]);
  const toNhwc = (t: string) => g.nchwc('ReorderOutput', [t], [A.int('channels', c), A.int('channels_last', 1)]);
  const conv = (input: string, f: string, attrs: { group: number; kernel: number[]; pads: number[]; strides: number[]; dilations: number[] }) =>
    g.nchwc('Conv', [input, f], [A.int('group', attrs.group), A.ints('kernel_shape', attrs.kernel), A.ints('pads', attrs.pads), A.ints('strides', attrs.strides), A.ints('dilations', attrs.dilations)]);

  const xb = toBlocked(x);
  const y = toNhwc(conv(xb, filter, { group: cp, kernel: [kh, kw], pads: win.pads, strides: win.stride, dilations: win.dilation }));

  const backward = (dz: string, want: { input: boolean; kernel: boolean }): { dx: string | null; dw: string | null } => {
    const dzb = toBlocked(dz);
    let dx: string | null = null;
    if (want.input) {
      const flipped = g.reshape(g.op('Slice', [taps, g.ints([-1, -1]), g.ints([-kh - 1, -kw - 1]), g.ints([1, 2]), g.ints([-1, -1])]), [cp, 1, kh, kw]);
      // Zero-upsampled by the stride: each output gradient at s * i, zeros between (and s - 1 after the last).
      const [sh, sw] = win.stride as [number, number];
      const up = sh === 1 && sw === 1 ? dzb : g.reshape(g.op('Pad', [g.reshape(dzb, [0, blocks, ho, 1, wo, 1, B]), g.ints([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1, 0])]), [0, cp, ho * sh, wo * sw]);
      const [top, bottom] = inputGradientPads(win, 0);
      const [left, right] = inputGradientPads(win, 1);
      dx = toNhwc(conv(up, flipped, { group: cp, kernel: [kh, kw], pads: [top, left, bottom, right], strides: [1, 1], dilations: win.dilation }));
    }
    let dw: string | null = null;
    if (want.kernel) {
      // dW[i, j] = sum over images and outputs of x_padded[s * o + d * i] * dz[o]: the images, padded to the fixed
      // batch, folded into the channels; dz is the kernel (dilated by the stride), the output stride the dilation.
      const padBatch = (t: string) => {
        if (target.exact) return t;
        const missing = g.op('Sub', [g.ints([target.batch]), g.op('Gather', [g.op('Shape', [t]), g.ints([0])], [A.int('axis', 0)])]);
        const full = g.op('Equal', [g.op('ReduceSum', [missing], [A.int('keepdims', 0)]), g.int64Tensor('zero', [], [0])]);
        // A full batch (every batch but an epoch's last) passes as it is: a Pad by zero would still copy it.
        return g.ifElse(full, (b) => b.node('Identity', [t], 'full_batch'), (b) => b.node('Pad', [t, b.op('Concat', [b.ints([0, 0, 0, 0]), missing, b.ints([0, 0, 0])], [A.int('axis', 0)])], 'padded_batch'));
      };
      const folded = g.reshape(padBatch(xb), [1, target.batch * cp, h, w]);
      const kernelOfDz = g.reshape(padBatch(dzb), [target.batch * cp, 1, ho, wo]);
      const span = (a: 0 | 1) => {
        const { size, k, out, s, d, begin } = along(win, a);
        const end = Math.max(0, (k - 1) * d + (out - 1) * s + 1 - size - begin);
        return { end, rows: Math.floor((size + begin + end - (out - 1) * s - 1) / d) + 1 };
      };
      const [sh, sw] = [span(0), span(1)];
      const perImage = conv(folded, kernelOfDz, { group: target.batch * cp, kernel: [ho, wo], pads: [win.pads[0]!, win.pads[1]!, sh.end, sw.end], strides: win.dilation, dilations: win.stride });
      let summed = g.reduceSum(g.reshape(perImage, [target.batch, blocks, sh.rows, sw.rows, B]), [0]);
      if (sh.rows > kh || sw.rows > kw) summed = g.op('Slice', [summed, g.ints([0, 0]), g.ints([kh, kw]), g.ints([1, 2])]);
      const hwc = g.reshape(g.transpose(summed, [1, 2, 0, 3]), [kh, kw, cp]);
      dw = cp === c ? hwc : g.op('Slice', [hwc, g.ints([0]), g.ints([c]), g.ints([2])]);
    }
    return { dx, dw };
  };
  return { y, backward };
}
