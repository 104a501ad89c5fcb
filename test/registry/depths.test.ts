import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../../src/backend/index.js';
import { attachHead, cutModel } from '../../src/model/index.js';
import { blockBoundaries } from '../../src/model/depths.js';
import { buildVariant, resolveVariant } from '../../src/registry/index.js';

let tf: Tf;
beforeAll(async () => {
  ({ tf } = await loadBackend({ choice: 'wasm' }));
});

describe('block boundaries (the depths --freeze auto considers)', () => {
  for (const [name, size] of [['mobilenet_v2', 96], ['resnet50', 64], ['inception_v3', 75], ['vgg16', 32], ['mobilenet_v3_small', 64]] as const) {
    it(`${name}: every boundary leaves exactly one tensor crossing the cut; the last is the whole backbone`, () => {
      const backbone = buildVariant(tf, name, { includeTop: false, inputSize: size });
      const depths = blockBoundaries(backbone);
      expect(depths.length).toBeGreaterThan(4);
      expect(depths.at(-1)!.freeze).toBe(backbone.layers.length);
      const full = attachHead(tf, backbone, { classes: 3, dropout: 0, name: 'm' });
      // The cut module agrees: one tail input at each boundary inside the backbone.
      for (const d of depths.slice(0, -1)) {
        const cut = cutModel(tf, full, new Set(backbone.layers.slice(0, d.freeze).map((l) => l.name)));
        expect(cut.tail.inputs.length, `${name} --freeze ${d.freeze} (${d.layer})`).toBe(1);
        expect(cut.boundaryLayers).toEqual([d.layer]);
        cut.tail.dispose();
      }
      // A published fine-tuning point at a block boundary is one of them; mid-block points are not.
      const published = resolveVariant(name).variant.fineTuneFrom?.layers;
      if (published !== undefined && name !== 'mobilenet_v2') expect(depths.map((d) => d.freeze)).toContain(published);
      if (name === 'mobilenet_v2') expect(depths.map((d) => d.freeze)).not.toContain(100);
      full.dispose();
    });
  }
});
