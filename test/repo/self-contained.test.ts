// The repository must work as a user's clone: nothing in it may read a path outside the repository.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FOLDERS = ['src', 'test', 'bench', 'scripts', '.ci', 'bin'];
const TEXT = /\.(ts|js|mjs|cjs|py|sh|json)$|^run$/;

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'fixtures' && name !== '.tmp' && name !== 'node_modules') yield* files(path);
    } else if (TEXT.test(name)) yield path;
  }
}

/** Relative path literals ('../x', "./y/../../z") in a source file, and the places they resolve to. */
function escapes(file: string, text: string, root: string): string[] {
  const found: string[] = [];
  const literal = /(['"`])((?:\.\.?\/)+[^'"`\s$]*)\1/g;
  for (const m of text.matchAll(literal)) {
    const target = resolve(dirname(file), m[2]!);
    if (target !== root && !target.startsWith(root + sep)) found.push(`${relative(root, file)}: ${m[2]} -> ${target}`);
  }
  // Absolute paths to a sibling folder of the checkout (the shape `../shared` takes once resolved).
  for (const m of text.matchAll(/(['"`])(\/[^'"`\s]*\/shared\/[^'"`\s]*)\1/g)) found.push(`${relative(root, file)}: ${m[2]}`);
  return found;
}

describe('the repository is self-contained', () => {
  it('no file under src, test, bench, scripts, .ci or bin names a path outside the repository', () => {
    const bad: string[] = [];
    for (const folder of FOLDERS) {
      let exists = true;
      try { statSync(join(ROOT, folder)); } catch { exists = false; }
      if (!exists) continue;
      for (const file of files(join(ROOT, folder))) bad.push(...escapes(file, readFileSync(file, 'utf8'), ROOT));
    }
    expect(bad).toEqual([]);
  });

  it('the check sees a path that climbs out, and accepts one that stays in', () => {
    const file = join(ROOT, 'test', 'registry', 'x.test.ts');
    // Built at run time so that this file holds no such literal itself.
    const up = '../'.repeat(3);
    expect(escapes(file, `new URL('${up}shared/reference/', import.meta.url)`, ROOT)).toHaveLength(1);
    expect(escapes(file, `readFileSync('${'/work'}/shared/notes/a.md')`, ROOT)).toHaveLength(1);
    expect(escapes(file, "new URL('../fixtures/keras-applications/', import.meta.url)", ROOT)).toEqual([]);
    expect(escapes(file, "import { x } from '../../src/index.js';", ROOT)).toEqual([]);
  });
});
