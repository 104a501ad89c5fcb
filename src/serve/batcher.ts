// Dynamic batching: requests that arrive close together run as one batch. A batch runs when `maxBatch` items wait,
// when the oldest has waited `maxWaitMs`, or when no other item is on its way; one batch runs at a time (it has every
// intra-op thread), and what arrives meanwhile forms the next one.

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  /**
   * How many items are on their way (e.g. requests still being read or decoded): with none, a batch runs at once instead of
   * waiting `maxWaitMs` for items that are not coming.
   */
  coming?: () => number;
}

export interface BatcherStats {
  /** Items run. */
  items: number;
  /** Batches run. */
  batches: number;
  /** How many batches ran with each size (index = size). */
  sizes: number[];
}

interface Waiting<I, O> {
  item: I;
  at: number;
  resolve(out: O): void;
  reject(err: unknown): void;
}

export class DynamicBatcher<I, O> {
  private readonly queue: Waiting<I, O>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly counts: BatcherStats;

  /** `run` takes a batch of items and returns one output per item, in order. */
  constructor(private readonly run: (items: I[]) => Promise<O[]>, private readonly options: BatcherOptions) {
    if (!(options.maxBatch >= 1) || !(options.maxWaitMs >= 0)) throw new RangeError(`maxBatch must be at least 1 and maxWaitMs at least 0 (got ${options.maxBatch}, ${options.maxWaitMs})`);
    this.counts = { items: 0, batches: 0, sizes: new Array<number>(options.maxBatch + 1).fill(0) };
  }

  /** The output for `item`, once the batch it joins has run. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, at: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  stats(): BatcherStats {
    return { ...this.counts, sizes: [...this.counts.sizes] };
  }

  /** Items waiting or running. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  private schedule(): void {
    if (this.running > 0 || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0]!.at;
    const coming = this.options.coming?.() ?? Infinity;
    if (this.queue.length >= this.options.maxBatch || waited >= this.options.maxWaitMs || coming === 0) {
      void this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.schedule();
    }, Math.max(0, this.options.maxWaitMs - waited));
  }

  private async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, this.options.maxBatch);
    this.running = batch.length;
    try {
      const outs = await this.run(batch.map((w) => w.item));
      if (outs.length !== batch.length) throw new Error(`a batch of ${batch.length} gave ${outs.length} outputs`);
      this.counts.items += batch.length;
      this.counts.batches += 1;
      this.counts.sizes[batch.length]! += 1;
      batch.forEach((w, i) => w.resolve(outs[i]!));
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      this.running = 0;
      this.schedule();
    }
  }
}
