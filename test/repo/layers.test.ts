// The layers of src/, written down once: a module imports its own folder and folders of lower layers only. An
// import that points up or sideways (to another folder of its own layer) fails here, naming the file and the import.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Lowest first. `.` is src/ itself (errors.ts, version.ts). */
const LAYERS: string[][] = [
  // Foundations: errors, the version; small helpers.
  ['.'],
  ['util'],
  // Arithmetic on results, the compute backend, the model store.
  ['metrics', 'backend', 'store'],
  // What models are, and how work is split into shards.
  ['registry', 'shard'],
  // Machinery over models and data: freezing and the cut, datasets, weights, ONNX (export, train-step compiler,
  // runtime), reports.
  ['model', 'data', 'weights', 'onnx', 'report'],
  // Engines: TensorFlow.js replicas, ONNX Runtime sessions over exported graphs, the environment check.
  ['replicas', 'engine', 'doctor'],
  // The frozen part and its outputs; models for inference.
  ['frozen', 'inference'],
  // What computes an optimizer step; the commands' cores that only run models.
  ['step', 'features', 'export', 'eval', 'merge', 'serve'],
  // The options of the commands that train, each written once (flags, limits, defaults, config.json's schema).
  ['options'],
  // The commands' cores that train.
  ['train', 'rank'],
  // Audits of a dataset that train probes on a backbone's features (label suspects).
  ['audit'],
  // The command line.
  ['cli'],
];

const layerOf = new Map(LAYERS.flatMap((folders, i) => folders.map((f) => [f, i] as const)));

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

/** The folder of a path under src/ (`.` for src/ itself). */
const folderOf = (path: string) => {
  const parts = relative(SRC, path).split(sep);
  return parts.length > 1 ? parts[0]! : '.';
};

describe('the layers of src/', () => {
  it('place every folder of src/', () => {
    const folders = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
    expect(folders.filter((f) => !layerOf.has(f))).toEqual([]);
    expect([...layerOf.keys()].filter((f) => f !== '.' && !folders.includes(f))).toEqual([]);
  });

  it('are kept: every import between folders points down', () => {
    const violations: string[] = [];
    let imports = 0;
    for (const file of sources(SRC)) {
      const from = folderOf(file);
      const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      for (const { fileName } of info.importedFiles) {
        if (!fileName.startsWith('.')) continue;
        imports++;
        const to = folderOf(resolve(dirname(file), fileName));
        if (to === from) continue;
        const [a, b] = [layerOf.get(from)!, layerOf.get(to)!];
        if (b > a) violations.push(`${relative(SRC, file)} imports ${fileName}: up from ${from} to ${to}`);
        else if (b === a) violations.push(`${relative(SRC, file)} imports ${fileName}: sideways from ${from} to ${to}`);
      }
    }
    // The parse found the imports (a broken reader would pass vacuously).
    expect(imports).toBeGreaterThan(300);
    expect(violations).toEqual([]);
  });

  it("are README's module map, layer by layer", () => {
    const readme = readFileSync(resolve(SRC, '../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Development'));
    // The numbered list: each item's folders are the backticked `name/` it names before any explanation in brackets.
    const items = [...section.matchAll(/^(\d+)\. ([\s\S]*?)(?=^\d+\. |^\S|^$)/gm)].map((m) => m[2]!);
    const mapped = items.map((text) => [...text.replace(/\([^()]*(\([^()]*\)[^()]*)*\)/g, '').matchAll(/`([a-z]+)\/`/g)].map((m) => m[1]!));
    // Layer 0 is src/ itself (errors.ts, version.ts), written with util/ in README's first item.
    const layers = LAYERS.map((folders) => folders.filter((f) => f !== '.'));
    layers[1] = [...layers[0]!, ...layers[1]!];
    layers.shift();
    expect(mapped.map((folders) => [...folders].sort())).toEqual(layers.map((folders) => [...folders].sort()));
  });
});
