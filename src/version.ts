// tl's own version, read from its package.json.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * tl's package folder and version: the nearest package.json above this module (from src/ or dist/src/) that
 * declares the `tl` bin, so neither a rename of the package nor a package.json in between changes the answer.
 */
function findPackage(start: string): { root: string | null; version: string } {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'package.json');
    try {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { bin?: Record<string, string>; version?: string };
      if (typeof pkg.bin?.['tl'] === 'string' && typeof pkg.version === 'string') return { root: dir, version: pkg.version };
    } catch {
      // not here; keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir) return { root: null, version: '0.0.0' };
    dir = parent;
  }
}

const found = findPackage(dirname(fileURLToPath(import.meta.url)));

/** The installed tl version. */
export const TL_VERSION: string = found.version;

/** The tl executable (bin/tl.js of this installation), as a job on another machine of a cluster runs it. */
export const TL_BIN: string = found.root ? join(found.root, 'bin', 'tl.js') : process.argv[1] ?? 'tl';
