// Fetches a file from a Debian package (apt-get download + dpkg -x) for tests and benchmarks, cached under test/.tmp.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Cached beside the sources (test/.tmp is gitignored); the built copy in dist/ resolves to the same folder.
const CACHE = join(fileURLToPath(new URL('.', import.meta.url)).replace(/\/dist\/scripts\/?$/, '/scripts'), '..', 'test', '.tmp', 'debian');

/** Path of `file` (absolute inside the package) extracted from Debian package `pkg`, or null with the reason. */
export function debianFile(pkg: string, file: string): { path: string } | { path: null; reason: string } {
  const root = join(CACHE, pkg);
  const target = join(root, file);
  if (existsSync(target)) return { path: target };
  for (const installed of [file]) if (existsSync(installed)) return { path: installed };
  try {
    mkdirSync(root, { recursive: true });
    execFileSync('apt-get', ['download', pkg], { cwd: root, stdio: 'pipe', timeout: 120_000 });
    const deb = readdirSync(root).find((f) => f.endsWith('.deb'));
    if (!deb) return { path: null, reason: `apt-get download ${pkg} produced no .deb` };
    execFileSync('dpkg', ['-x', deb, '.'], { cwd: root, stdio: 'pipe' });
  } catch (err) {
    return { path: null, reason: `apt-get/dpkg unavailable or failed for ${pkg}: ${(err as Error).message.split('\n')[0]}` };
  }
  return existsSync(target) ? { path: target } : { path: null, reason: `${file} not in ${pkg}` };
}
