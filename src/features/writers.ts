// Streaming writers for extracted features: .npy (float32, numpy's format 1.0), CSV and JSON lines. Each writes
// to a temp file beside its target and renames it on `finish`, so a target is never half-written.
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { tempPathFor, untrackTemp } from '../util/atomic.js';
import { NPY_HEADER_BYTES, npyHeader } from '../util/npy.js';

/** A file written through a temp file: `finish` renames it into place, `abort` removes it. */
class AtomicFile {
  private constructor(readonly path: string, private readonly tmp: string, readonly handle: FileHandle) {}

  static async open(path: string): Promise<AtomicFile> {
    const tmp = tempPathFor(path);
    return new AtomicFile(path, tmp, await open(tmp, 'w'));
  }

  async finish(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tmp, this.path);
    untrackTemp(this.tmp);
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.tmp, { force: true });
    untrackTemp(this.tmp);
  }
}

export interface FeatureRow {
  path: string;
  class: string;
  split: string;
}

/** Writes rows of features in one of the output formats. */
export interface FeatureWriter {
  /** `features` holds `rows.length` rows of `width` floats. */
  write(rows: FeatureRow[], features: Float32Array): Promise<void>;
  finish(): Promise<void>;
  abort(): Promise<void>;
  /** Files written (final paths). */
  readonly files: string[];
}

const csvField = (v: string) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** `.npy` of shape [n, ...rowShape] plus an index CSV (row order = array order). */
export async function npyWriter(path: string, indexPath: string, rowShape: number[]): Promise<FeatureWriter> {
  const npy = await AtomicFile.open(path);
  const index = await AtomicFile.open(indexPath);
  let rows = 0;
  let at = NPY_HEADER_BYTES;
  await npy.handle.write(npyHeader([0, ...rowShape]), 0, NPY_HEADER_BYTES, 0);
  await index.handle.write('row,path,class,split\n');
  return {
    files: [path, indexPath],
    async write(items, features) {
      const bytes = Buffer.from(features.buffer, features.byteOffset, features.byteLength);
      await npy.handle.write(bytes, 0, bytes.length, at);
      at += bytes.length;
      await index.handle.write(items.map((r) => `${rows++},${csvField(r.path)},${csvField(r.class)},${r.split}\n`).join(''));
    },
    async finish() {
      await npy.handle.write(npyHeader([rows, ...rowShape]), 0, NPY_HEADER_BYTES, 0);
      await npy.finish();
      await index.finish();
    },
    async abort() {
      await npy.abort();
      await index.abort();
    },
  };
}

/** One CSV with path, class, split and a column per feature. */
export async function csvWriter(path: string, width: number): Promise<FeatureWriter> {
  const file = await AtomicFile.open(path);
  await file.handle.write(`path,class,split,${Array.from({ length: width }, (_, i) => `f${i}`).join(',')}\n`);
  return {
    files: [path],
    async write(items, features) {
      const lines = items.map((r, i) => `${csvField(r.path)},${csvField(r.class)},${r.split},${Array.from(features.subarray(i * width, (i + 1) * width)).join(',')}\n`);
      await file.handle.write(lines.join(''));
    },
    finish: () => file.finish(),
    abort: () => file.abort(),
  };
}

/** JSON lines: {"path", "class", "split", "features": [...]} per image. */
export async function jsonlWriter(path: string, width: number): Promise<FeatureWriter> {
  const file = await AtomicFile.open(path);
  return {
    files: [path],
    async write(items, features) {
      const lines = items.map((r, i) => `${JSON.stringify({ path: r.path, class: r.class, split: r.split, features: Array.from(features.subarray(i * width, (i + 1) * width)) })}\n`);
      await file.handle.write(lines.join(''));
    },
    finish: () => file.finish(),
    abort: () => file.abort(),
  };
}
