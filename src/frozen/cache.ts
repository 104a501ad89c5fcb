// Per-image outputs of the frozen part: kept in memory within a budget, spilled to a disk file beyond it.
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { atPath } from '../errors.js';
import { tempPathFor } from '../util/atomic.js';

/** Stores one image's boundary tensors (one Float32Array per tail input). */
export class OutputCache {
  private readonly memory = new Map<string, Float32Array[]>();
  private readonly onDisk = new Map<string, number>();
  private readonly floatsPerImage: number[];
  private readonly bytesPerImage: number;
  private fd: number | null = null;
  private diskPath: string | null = null;
  private diskEnd = 0;
  private memoryBytes = 0;
  hits = 0;
  misses = 0;

  constructor(shapes: number[][], private readonly budgetBytes: number, private readonly spillDir: string) {
    this.floatsPerImage = shapes.map((s) => s.reduce((a, b) => a * b, 1));
    this.bytesPerImage = this.floatsPerImage.reduce((a, b) => a + b, 0) * 4;
  }

  get spilled(): number {
    return this.onDisk.size;
  }

  /** Whether `key` is cached (not counted). */
  has(key: string): boolean {
    return this.memory.has(key) || (this.fd !== null && this.onDisk.has(key));
  }

  /** The cached tensors of `key`, or undefined (counted as a miss). */
  get(key: string): Float32Array[] | undefined {
    const inMemory = this.memory.get(key);
    if (inMemory) {
      this.hits++;
      return inMemory;
    }
    const offset = this.onDisk.get(key);
    if (offset === undefined || this.fd === null) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    const bytes = Buffer.alloc(this.bytesPerImage);
    readSync(this.fd, bytes, 0, this.bytesPerImage, offset);
    const all = new Float32Array(bytes.buffer, bytes.byteOffset, this.bytesPerImage / 4);
    let at = 0;
    return this.floatsPerImage.map((n) => {
      const part = all.subarray(at, at + n);
      at += n;
      return part;
    });
  }

  set(key: string, tensors: Float32Array[]): void {
    if (this.memoryBytes + this.bytesPerImage <= this.budgetBytes) {
      this.memory.set(key, tensors);
      this.memoryBytes += this.bytesPerImage;
      return;
    }
    if (this.fd === null) {
      this.diskPath = tempPathFor(join(this.spillDir, 'features.bin'));
      this.fd = openSync(this.diskPath, 'w+');
    }
    try {
      for (const t of tensors) writeSync(this.fd, new Uint8Array(t.buffer, t.byteOffset, t.byteLength), 0, t.byteLength, this.diskEnd + tensorsOffset(tensors, t));
    } catch (err) {
      throw atPath(err, this.diskPath!);
    }
    this.onDisk.set(key, this.diskEnd);
    this.diskEnd += this.bytesPerImage;
  }

  hitRate(): number {
    const total = this.hits + this.misses;
    return total === 0 ? 0 : this.hits / total;
  }

  /** Frees memory and removes the spill file. */
  dispose(): void {
    this.memory.clear();
    this.onDisk.clear();
    if (this.fd !== null) closeSync(this.fd);
    if (this.diskPath !== null) rmSync(this.diskPath, { force: true });
    this.fd = null;
    this.diskPath = null;
  }
}

function tensorsOffset(all: Float32Array[], target: Float32Array): number {
  let offset = 0;
  for (const t of all) {
    if (t === target) return offset;
    offset += t.byteLength;
  }
  return offset;
}
