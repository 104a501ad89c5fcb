// The model store: where downloaded and extracted weights live ($TL_HOME, default ~/.cache/tl).
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { statfs } from 'node:fs/promises';

/** Root folder of the model store. */
export function storeRoot(env: NodeJS.ProcessEnv = process.env): string {
  const home = env['TL_HOME'];
  if (home !== undefined && home !== '') return resolve(home);
  return join(homedir(), '.cache', 'tl');
}

/** Free bytes on the file system that holds `path` (or its nearest existing parent). */
export async function freeBytes(path: string): Promise<number | undefined> {
  let dir = path;
  for (let i = 0; i < 64; i++) {
    try {
      const s = await statfs(dir);
      return s.bavail * s.bsize;
    } catch {
      const parent = resolve(dir, '..');
      if (parent === dir) return undefined;
      dir = parent;
    }
  }
  return undefined;
}
