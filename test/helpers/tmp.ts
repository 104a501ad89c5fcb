// Temporary folders for tests, removed after the test file that made them (and, as a fallback, when the process exits:
// vitest's workers can outlive a file, so the exit hook alone let folders pile up across runs).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];
const removeAll = () => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
};
process.on('exit', removeAll);
// Registered while the test file that imports this module is collected, so it runs after that file's tests.
afterAll(removeAll);

/** A fresh empty folder. */
export function tempDir(prefix = 'tl-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
