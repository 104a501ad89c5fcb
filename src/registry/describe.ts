// What `tl models` shows: the registry as rows, and one model's layer table.
import { existsSync } from 'node:fs';
import type { Tf } from '../backend/index.js';
import { kerasStorePath, nsfwjsFolder } from '../store/paths.js';
import { FAMILIES, buildVariant, layerTable, resolveVariant, type LayerRow } from './index.js';
import type { Variant, WeightSource } from './types.js';

export interface ModelRow {
  name: string;
  family: string;
  keras: string;
  params: number;
  layers: number;
  inputSize: number;
  preprocess: Variant['preprocess'];
  weights: string;
  inStore: boolean;
  /** Where the pretrained weights come from without a network: the store, the nsfwjs npm package, or nowhere yet. */
  offline: 'store' | 'npm package' | 'no';
  trainedOn: string;
}

/** Where a weight source is kept in the store. */
export function sourceStorePath(store: string, source: WeightSource): string {
  return source.kind === 'nsfwjs' ? `${nsfwjsFolder(store, source.model)}/model.json` : kerasStorePath(store, source.url);
}

function describeSource(source: WeightSource): string {
  return source.kind === 'nsfwjs' ? `nsfwjs@4.4.0 npm package (${source.model}, offline)` : `Keras .h5 ${source.includeTop ? '(with top)' : '(no top)'}`;
}

/** One row per registry variant (backbone figures, without the top). */
export function listModels(store: string): ModelRow[] {
  return FAMILIES.flatMap((family) =>
    family.variants.map((v) => {
      const backboneSource = v.weights.find((w) => !w.includeTop) ?? v.weights[0];
      return {
        name: v.name,
        family: family.name,
        keras: v.keras,
        params: v.backbone.params,
        layers: v.backbone.layers,
        inputSize: v.inputSize,
        preprocess: v.preprocess,
        weights: backboneSource ? describeSource(backboneSource) : 'none',
        inStore: v.weights.some((w) => existsSync(sourceStorePath(store, w))),
        // nsfwjs's weights ship inside its npm package (a dependency of tl): extracted into the store on first use.
        offline: v.weights.some((w) => w.kind === 'keras-h5' && existsSync(sourceStorePath(store, w))) ? 'store' : v.weights.some((w) => w.kind === 'nsfwjs') ? 'npm package' : 'no',
        trainedOn: v.trainedOn,
      };
    }),
  );
}

export interface ModelInfo {
  name: string;
  family: string;
  keras: string;
  includeTop: boolean;
  inputShape: number[];
  preprocess: Variant['preprocess'];
  totalParams: number;
  trainedOn: string;
  license: string;
  origin: string;
  layers: LayerRow[];
  weights: (WeightSource & { storePath: string; inStore: boolean })[];
}

/** A variant's full description, building it (random weights) for its layer table. */
export function modelInfo(tf: Tf, name: string, options: { includeTop: boolean; store: string }): ModelInfo {
  const { family, variant } = resolveVariant(name);
  const model = buildVariant(tf, name, { includeTop: options.includeTop });
  try {
    return {
      name: variant.name,
      family: family.name,
      keras: variant.keras,
      includeTop: options.includeTop,
      inputShape: [variant.inputSize, variant.inputSize, 3],
      preprocess: variant.preprocess,
      totalParams: model.countParams(),
      trainedOn: variant.trainedOn,
      license: variant.license,
      origin: variant.origin,
      layers: layerTable(model),
      weights: variant.weights.map((w) => {
        const storePath = sourceStorePath(options.store, w);
        return { ...w, storePath, inStore: existsSync(storePath) };
      }),
    };
  } finally {
    model.dispose();
  }
}
