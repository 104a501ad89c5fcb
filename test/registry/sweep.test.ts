import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { FAMILIES, buildVariant, layerTable, resolveVariant, type LayerRow } from '../../src/registry/index.js';

// The Keras applications' layer tables, kept in the repository (see test/fixtures/keras-applications/README.md).
const REFERENCE = new URL('../fixtures/keras-applications/', import.meta.url);

interface RefRow { index: number; name: string; className: string; params: number; outputShape: (number | null)[] | null }

function readTable(file: string): RefRow[] {
  const lines = readFileSync(new URL(file, REFERENCE), 'utf8').trim().split('\n').slice(1);
  return lines.map((line) => {
    const [index, name, className, params, shape] = line.split('\t') as [string, string, string, string, string];
    const outputShape = shape === 'None' ? null : shape.replace(/[()]/g, '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => (s === 'None' ? null : Number(s)));
    return { index: Number(index), name, className, params: Number(params), outputShape };
  });
}

/** Shapes agree where the reference is concrete (None in a no-top table means "any size"). */
function shapeMatches(ref: RefRow['outputShape'], got: LayerRow['outputShape']): boolean {
  if (ref === null) return true;
  if (got === null || got.length !== ref.length) return false;
  return ref.every((d, i) => d === null || d === got[i]);
}

let tf: Tf;
beforeAll(async () => {
  tf = (await loadBackend({ choice: 'wasm' })).tf;
});

/** Variants the tf.keras tables cover. */
const TABLES: Record<string, string> = { vgg16: 'VGG16', resnet50: 'ResNet50', mobilenet: 'MobileNet', mobilenet_v2: 'MobileNetV2', mobilenet_v3_small: 'MobileNetV3Small', mobilenet_v3_large: 'MobileNetV3Large' };

describe('registry sweep against the tf.keras reference tables', () => {
  for (const [name, keras] of Object.entries(TABLES)) {
    for (const top of [true, false]) {
      it(`${name} ${top ? 'with' : 'without'} top equals tfk_${keras}_${top ? 'top' : 'notop'}.tsv row for row`, () => {
        const before = tf.memory().numTensors;
        const model = buildVariant(tf, name, { includeTop: top });
        const got = layerTable(model);
        const ref = readTable(`tfk_${keras}_${top ? 'top' : 'notop'}.tsv`);
        model.dispose();
        expect(got.length).toBe(ref.length);
        const mismatches = ref.filter((r, i) => {
          const g = got[i]!;
          return !(g.index === r.index && g.name === r.name && g.className === r.className && g.params === r.params && shapeMatches(r.outputShape, g.outputShape));
        }).slice(0, 5).map((r) => ({ ref: r, got: got[r.index] }));
        expect(mismatches).toEqual([]);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
});

describe('every registry variant builds', () => {
  const all = FAMILIES.flatMap((f) => f.variants.map((v) => v.name));
  for (const name of all) {
    it(`${name} builds with and without top, output shapes as expected`, () => {
      const noTop = buildVariant(tf, name, { includeTop: false });
      const top = buildVariant(tf, name, { includeTop: true, classes: 7 });
      expect(noTop.outputs[0]!.shape.length).toBe(4);
      const { variant } = resolveVariant(name);
      expect({ params: noTop.countParams(), layers: noTop.layers.length }).toEqual(variant.backbone);
      expect(top.outputs[0]!.shape).toEqual([null, 7]);
      noTop.dispose();
      top.dispose();
    });
  }
});
