// The shape of src/: the fine-tune keeps only its sequence, and no function grows past what reads in one screen or two.
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
/** Lines a function may span, and train/finetune.ts as a whole. */
const MAX_FUNCTION_LINES = 100;
const MAX_FINETUNE_LINES = 200;

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

/** Every function (declarations, methods, arrows, expressions) longer than `max` lines: `file:line name (n lines)`. */
function longFunctions(files: Iterable<string>, max: number): string[] {
  const found: string[] = [];
  for (const file of files) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && node.body) {
        const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
        const last = source.getLineAndCharacterOfPosition(node.end).line;
        const parent = node.parent;
        const name = node.name?.getText(source) ?? (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) ? parent.name.getText(source) : '(anonymous)');
        if (last - first + 1 > max) found.push(`${relative(SRC, file)}:${first + 1} ${name} (${last - first + 1} lines)`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

describe('the shape of src/', () => {
  it(`no function is longer than ${MAX_FUNCTION_LINES} lines`, () => {
    expect(longFunctions(sources(SRC), MAX_FUNCTION_LINES)).toEqual([]);
  });

  it('finds a long function when there is one (the check itself)', () => {
    const dir = tempDir();
    const file = join(dir, 'long-function.ts');
    writeFileSync(file, `export const f = () => {\n${'  void 0;\n'.repeat(MAX_FUNCTION_LINES)}};\n`);
    try {
      expect(longFunctions([file], MAX_FUNCTION_LINES)).toEqual([`${relative(SRC, file)}:1 f (${MAX_FUNCTION_LINES + 2} lines)`]);
    } finally {
      rmSync(file);
    }
  });

  it(`train/finetune.ts keeps the sequence only (under ${MAX_FINETUNE_LINES} lines)`, () => {
    const lines = readFileSync(join(SRC, 'train', 'finetune.ts'), 'utf8').split('\n').length;
    expect(lines).toBeLessThan(MAX_FINETUNE_LINES);
  });
});
