// Windows read through a constant index table (the portable lowering, for every execution provider): one Gather
// puts a window's taps side by side, [N, ho, wo, K, c] (K = kh * kw), and an input gradient gathers the output
// gradient back through the transposed table. One pass that ONNX Runtime threads, instead of a Pad and K Slices.
import { A } from '../graph.js';
import type { StepBuilder, Window } from './builder.js';

/**
 * The window's taps as one tensor [N, ho, wo, K, c] (Keras kernel order): a single Gather over the flattened input
 * with a constant index table, where padding reads an extra row of `fill` appended to the input.
 */
export function gatherTaps(g: StepBuilder, x: string, win: Window, fill = 0): string {
  const k = win.kh * win.kw;
  const zero = win.h * win.w;
  const idx: number[] = [];
  let padded = false;
  for (let oi = 0; oi < win.ho; oi++) {
    for (let oj = 0; oj < win.wo; oj++) {
      for (let i = 0; i < win.kh; i++) {
        for (let j = 0; j < win.kw; j++) {
          const r = oi * win.stride[0]! + i * win.dilation[0]! - win.pads[0]!;
          const c = oj * win.stride[1]! + j * win.dilation[1]! - win.pads[1]!;
          const inside = r >= 0 && r < win.h && c >= 0 && c < win.w;
          padded ||= !inside;
          idx.push(inside ? r * win.w + c : zero);
        }
      }
    }
  }
  const flat = withExtraRow(g, g.reshape(x, [0, win.h * win.w, win.c]), 3, padded, fill);
  return g.op('Gather', [flat, g.int64Tensor('taps', [win.ho, win.wo, k], idx)], [A.int('axis', 1)]);
}

/**
 * The transposed table: for each input position and tap, the output position whose window read it through that tap
 * (or the extra zero row), [h, w, K]. Gathering a gradient [N, ho, wo, ...] with it puts each output's gradient
 * where its taps came from; `perTap` indexes a [N, ho * wo * K, ...] tensor of per-tap gradients instead.
 */
function scatterIndex(win: Window, perTap: boolean): { idx: number[]; padded: boolean } {
  const k = win.kh * win.kw;
  const zero = win.ho * win.wo * (perTap ? k : 1);
  const idx: number[] = [];
  let padded = false;
  for (let r = 0; r < win.h; r++) {
    for (let c = 0; c < win.w; c++) {
      for (let i = 0; i < win.kh; i++) {
        for (let j = 0; j < win.kw; j++) {
          const a = r + win.pads[0]! - i * win.dilation[0]!;
          const b = c + win.pads[1]! - j * win.dilation[1]!;
          const oi = a / win.stride[0]!;
          const oj = b / win.stride[1]!;
          const hit = a >= 0 && b >= 0 && Number.isInteger(oi) && Number.isInteger(oj) && oi < win.ho && oj < win.wo;
          padded ||= !hit;
          const o = oi * win.wo + oj;
          idx.push(hit ? (perTap ? o * k + i * win.kw + j : o) : zero);
        }
      }
    }
  }
  return { idx, padded };
}

/** Gathers `dy` ([N, rows, ...rest] once flattened) onto the input positions: [N, h, w, K, ...rest]. */
export function gatherBack(g: StepBuilder, dy: string, win: Window, rows: number, rest: number[], perTap: boolean): string {
  const { idx, padded } = scatterIndex(win, perTap);
  const flat = withExtraRow(g, g.reshape(dy, [0, rows, ...rest]), 2 + rest.length, padded, 0);
  return g.op('Gather', [flat, g.int64Tensor('scatter', [win.h, win.w, win.kh * win.kw], idx)], [A.int('axis', 1)]);
}

/** Appends one row of `fill` along axis 1 of a [N, rows, ...] value (the row padding reads), when it is needed. */
function withExtraRow(g: StepBuilder, x: string, rank: number, needed: boolean, fill: number): string {
  if (!needed) return x;
  const pads = new Array<number>(2 * rank).fill(0);
  pads[rank + 1] = 1;
  return g.op('Pad', [x, g.ints(pads), ...(fill === 0 ? [] : [g.f(fill)])]);
}
