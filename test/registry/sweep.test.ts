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

/** The reference tables of each variant: tf.keras (Keras 2) and Keras 3, which agree but for the input layer's name. */
const TABLES: Record<string, { keras: string; flavours: ('tfk' | 'k3')[] }> = {
  vgg16: { keras: 'VGG16', flavours: ['tfk', 'k3'] },
  resnet50: { keras: 'ResNet50', flavours: ['tfk', 'k3'] },
  mobilenet: { keras: 'MobileNet', flavours: ['tfk', 'k3'] },
  mobilenet_v2: { keras: 'MobileNetV2', flavours: ['tfk', 'k3'] },
  // Keras 3 builds MobileNetV3 from other layers (hard-swish as Activation layers, no TFOpLambda): tl follows tf.keras.
  mobilenet_v3_small: { keras: 'MobileNetV3Small', flavours: ['tfk'] },
  mobilenet_v3_large: { keras: 'MobileNetV3Large', flavours: ['tfk'] },
  inception_v3: { keras: 'InceptionV3', flavours: ['k3'] },
};

/** The input layer's name: `input` in the tf.keras tables, `input_layer` in Keras 3's; tl names it `input`. */
const INPUT_NAME = { tfk: 'input', k3: 'input_layer' } as const;

describe('registry sweep against the Keras reference tables', () => {
  for (const [name, { keras, flavours }] of Object.entries(TABLES)) {
    for (const flavour of flavours) for (const top of [true, false]) {
      const file = `${flavour}_${keras}_${top ? 'top' : 'notop'}.tsv`;
      it(`${name} ${top ? 'with' : 'without'} top equals ${file} row for row`, () => {
        const before = tf.memory().numTensors;
        const model = buildVariant(tf, name, { includeTop: top });
        const got = layerTable(model);
        const ref = readTable(file);
        model.dispose();
        expect(got.length).toBe(ref.length);
        const nameOf = (g: LayerRow) => (g.index === 0 && g.className === 'InputLayer' ? INPUT_NAME[flavour] : g.name);
        const mismatches = ref.filter((r, i) => {
          const g = got[i]!;
          return !(g.index === r.index && nameOf(g) === r.name && g.className === r.className && g.params === r.params && shapeMatches(r.outputShape, g.outputShape));
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
