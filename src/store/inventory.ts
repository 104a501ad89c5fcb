// What the model store holds and how much room it takes (`tl store`), and pruning what can be rebuilt or re-fetched.
import { readdir, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

export type StoreKind = 'onnx' | 'keras' | 'nsfwjs' | 'url';

export interface StoreEntry {
  kind: StoreKind;
  /** Path relative to the store root (a file, or a folder for nsfwjs and URL models). */
  name: string;
  path: string;
  bytes: number;
  /** Last use for ONNX graphs (tl touches them on use), else when the entry was written. */
  lastUsed: string;
  /** Whether tl rebuilds it by itself when it is gone (ONNX graphs, nsfwjs extractions) or must fetch it again. */
  rebuilds: boolean;
}

async function folderBytes(path: string): Promise<{ bytes: number; mtimeMs: number }> {
  let bytes = 0;
  let mtimeMs = 0;
  for (const e of await readdir(path, { withFileTypes: true }).catch(() => [])) {
    const p = join(path, e.name);
    if (e.isDirectory()) {
      const sub = await folderBytes(p);
      bytes += sub.bytes;
      mtimeMs = Math.max(mtimeMs, sub.mtimeMs);
    } else {
      const s = await stat(p).catch(() => null);
      if (s) {
        bytes += s.size;
        mtimeMs = Math.max(mtimeMs, s.mtimeMs);
      }
    }
  }
  return { bytes, mtimeMs };
}

/** Every entry of the store at `root` (a file's `.sha256` record is counted with it). */
export async function listStore(root: string): Promise<StoreEntry[]> {
  const out: StoreEntry[] = [];
  const files = async (dir: string, kind: StoreKind, suffix: string) => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith(suffix)) continue;
      const path = join(dir, name);
      const s = await stat(path).catch(() => null);
      if (!s?.isFile()) continue;
      const record = await stat(`${path}.sha256`).catch(() => null);
      out.push({ kind, name: relative(root, path), path, bytes: s.size + (record?.size ?? 0), lastUsed: new Date(s.mtimeMs).toISOString(), rebuilds: kind === 'onnx' });
    }
  };
  const folders = async (dir: string, kind: StoreKind, match: (name: string) => boolean) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory() || !match(e.name)) continue;
      const path = join(dir, e.name);
      const { bytes, mtimeMs } = await folderBytes(path);
      out.push({ kind, name: relative(root, path), path, bytes, lastUsed: new Date(mtimeMs).toISOString(), rebuilds: kind === 'nsfwjs' });
    }
  };
  await files(join(root, 'onnx'), 'onnx', '.onnx');
  await files(join(root, 'weights', 'keras'), 'keras', '.h5');
  await folders(join(root, 'weights'), 'nsfwjs', (n) => n.startsWith('nsfwjs-'));
  await folders(join(root, 'weights', 'url'), 'url', () => true);
  return out.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
}

export interface PruneOptions {
  /** ONNX graphs not used for this many days are removed (they are exported again when needed). */
  olderThanDays: number;
  /** Every ONNX graph, whatever its age. */
  allOnnx?: boolean;
  /** Downloaded weights too (Keras files, URL models: fetched again when needed, which needs the network). */
  weights?: boolean;
  dryRun?: boolean;
  now?: number;
}

/** Removes what `options` selects; returns what was (or, with dryRun, would be) removed. */
export async function pruneStore(root: string, options: PruneOptions): Promise<{ removed: StoreEntry[]; bytes: number }> {
  const now = options.now ?? Date.now();
  const cutoff = now - options.olderThanDays * 86_400_000;
  const removed = (await listStore(root)).filter((e) => {
    if (e.kind === 'onnx') return options.allOnnx === true || Date.parse(e.lastUsed) < cutoff;
    return options.weights === true && (e.kind === 'keras' || e.kind === 'url');
  });
  if (!options.dryRun) {
    for (const e of removed) {
      await rm(e.path, { recursive: true, force: true });
      await rm(`${e.path}.sha256`, { force: true });
    }
  }
  return { removed, bytes: removed.reduce((a, e) => a + e.bytes, 0) };
}
