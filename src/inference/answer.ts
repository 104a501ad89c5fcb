// One image's answer from a classifier's probabilities, as tl predict and tl serve give it (no heavy imports here).

export interface Answer {
  top: { class: string; probability: number }[];
  /**
   * A classifier with several labels per image: the labels whose probability is at least their threshold, most
   * probable first (possibly none). Absent for one label per image.
   */
  labels?: { class: string; probability: number; threshold: number }[];
}

/** The `k` most probable of `classes` in `probs` (one image's row) and, with `thresholds`, the labels at or above theirs. */
export function answerOf(probs: ArrayLike<number>, classes: readonly string[], k: number, thresholds: readonly number[] | null): Answer {
  const ranked = Array.from(probs, (p, c) => [p, c] as const).sort((a, b) => b[0] - a[0]);
  const top = ranked.slice(0, k).map(([p, c]) => ({ class: classes[c]!, probability: p }));
  if (thresholds === null) return { top };
  return { top, labels: ranked.filter(([p, c]) => p >= thresholds[c]!).map(([p, c]) => ({ class: classes[c]!, probability: p, threshold: thresholds[c]! })) };
}
