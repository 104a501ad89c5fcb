// Decoded images on demand: a memory cache when the dataset fits its budget, bounded decode concurrency,
// and an async batch stream with prefetch. Files that fail to decode are skipped and recorded.
import { availableParallelism } from 'node:os';
import { mixSeed, prng } from '../util/random.js';
import { augmentImage, type AugmentLevel } from './augment.js';
import { DEFAULT_RESIZE } from './modes.js';
import { DEFAULT_MAX_PIXELS, decodeFailureReason, decodeImage, type DecodeOptions, type ResizeMode } from './decode.js';
import { mapLimit, type ImageItem, type SkippedFile } from './scan.js';

export interface ImageSourceOptions {
  size: number;
  resize?: ResizeMode;
  maxPixels?: number;
  /** Bytes of decoded uint8 images kept in memory; when the dataset needs more, nothing is cached. */
  cacheBytes?: number;
  concurrency?: number;
}

export interface Batch {
  /** [n, size, size, 3] uint8 RGB, row-major. */
  pixels: Uint8Array;
  labels: Int32Array;
  items: ImageItem[];
}

export const DEFAULT_CACHE_BYTES = 2 * 1024 ** 3;

export interface BatchOptions {
  batchSize: number;
  shuffleSeed?: number;
  augment?: AugmentLevel;
  augmentSeed?: number;
  prefetch?: number;
  skip?: number;
  /** False for an image whose pixels the consumer does not need (its frozen-part outputs are cached): it is not decoded. */
  needPixels?: (item: ImageItem) => boolean;
}

/** Stands for an image that was not decoded because it is not needed. */
const NOT_NEEDED = new Uint8Array(0);

/** Decodes images for a dataset, caching them when they fit. */
export class ImageSource {
  readonly size: number;
  readonly skipped: SkippedFile[] = [];
  private readonly decode: DecodeOptions;
  private readonly cache = new Map<string, Uint8Array>();
  private readonly failed = new Set<string>();
  private readonly concurrency: number;
  private readonly cacheEnabled: boolean;

  constructor(items: readonly ImageItem[], options: ImageSourceOptions) {
    this.size = options.size;
    this.decode = { size: options.size, resize: options.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels ?? DEFAULT_MAX_PIXELS };
    this.concurrency = options.concurrency ?? Math.max(2, availableParallelism());
    this.cacheEnabled = items.length * this.imageBytes <= (options.cacheBytes ?? DEFAULT_CACHE_BYTES);
  }

  get imageBytes(): number {
    return this.size * this.size * 3;
  }

  /** The decoded image, or null when the file cannot be decoded (recorded in `skipped`). */
  async load(item: ImageItem): Promise<Uint8Array | null> {
    const hit = this.cache.get(item.path);
    if (hit) return hit;
    if (this.failed.has(item.path)) return null;
    try {
      const pixels = await decodeImage(item.path, this.decode);
      if (this.cacheEnabled) this.cache.set(item.path, pixels);
      return pixels;
    } catch (err) {
      this.failed.add(item.path);
      this.skipped.push({ path: item.path, reason: decodeFailureReason(err) });
      return null;
    }
  }

  /** Decodes every item once (filling the cache) and returns those that decode. */
  async validate(items: readonly ImageItem[], onProgress?: (done: number, total: number) => void, shouldStop?: () => boolean): Promise<ImageItem[]> {
    let done = 0;
    const ok = await mapLimit(items, this.concurrency, async (item) => {
      if (shouldStop?.()) return false;
      const pixels = await this.load(item);
      onProgress?.(++done, items.length);
      return pixels !== null;
    });
    return items.filter((_, i) => ok[i]);
  }

  /**
   * Batches of `items` in a seeded shuffled order (or as given), augmented when asked, decoded ahead of use:
   * up to `prefetch` batches are in flight while the consumer works; the first `skip` batches are left out.
   */
  async *batches(items: readonly ImageItem[], options: BatchOptions): AsyncGenerator<Batch> {
    const order = [...items];
    if (options.shuffleSeed !== undefined) {
      const rand = prng(options.shuffleSeed);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j] as ImageItem, order[i] as ImageItem];
      }
    }
    const groups: ImageItem[][] = [];
    for (let i = 0; i < order.length; i += options.batchSize) groups.push(order.slice(i, i + options.batchSize));
    const prefetch = Math.max(1, options.prefetch ?? 2);
    const pending: Promise<Batch>[] = [];
    // Skipped batches (a resumed epoch's finished ones) are never loaded; the rest keep their index and seeds.
    let next = options.skip ?? 0;
    const fill = () => {
      while (pending.length < prefetch && next < groups.length) {
        const index = next++;
        pending.push(this.assemble(groups[index] as ImageItem[], index, options.augment ?? 'none', options.augmentSeed ?? 0, options.needPixels));
      }
    };
    fill();
    while (pending.length > 0) {
      const batch = await (pending.shift() as Promise<Batch>);
      fill();
      if (batch.items.length > 0) yield batch;
    }
  }

  private async assemble(group: ImageItem[], batchIndex: number, augment: AugmentLevel, seed: number, needPixels?: (item: ImageItem) => boolean): Promise<Batch> {
    const images = await mapLimit(group, this.concurrency, async (item, i) => {
      // The consumer has this image's outputs already: its place in the batch stays zero, nothing is read.
      if (needPixels?.(item) === false) return NOT_NEEDED;
      const pixels = await this.load(item);
      if (pixels === null) return null;
      // A view is drawn with its own seed, the same every epoch; other images anew each epoch when augmenting.
      if (item.view) return augmentImage(pixels, this.size, item.view.level, item.view.seed);
      if (augment === 'none') return pixels;
      return augmentImage(pixels, this.size, augment, mixSeed(seed, batchIndex, i));
    });
    const kept = group.filter((_, i) => images[i] !== null);
    const pixels = new Uint8Array(kept.length * this.imageBytes);
    let k = 0;
    images.forEach((img) => {
      if (img !== null && img !== NOT_NEEDED) pixels.set(img, k * this.imageBytes);
      if (img !== null) k++;
    });
    return { pixels, labels: Int32Array.from(kept.map((item) => item.label)), items: kept };
  }
}
