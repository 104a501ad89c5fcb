// The model registry: every family listed explicitly, names resolved to variants, models built and described.
import type { LayersModel, Tf } from '../backend/index.js';
import { ModelNotFoundError } from '../errors.js';
import { inceptionV3 } from './inception_v3.js';
import { mobilenet } from './mobilenet.js';
import { mobilenetV2 } from './mobilenet_v2.js';
import { mobilenetV3 } from './mobilenet_v3.js';
import { resnet } from './resnet.js';
import type { BuildOptions, Family, Variant } from './types.js';
import { vgg } from './vgg.js';

export type { BuildOptions, Family, PreprocessMode, Variant, WeightSource } from './types.js';

/** Every family tl knows, in display order. */
export const FAMILIES: readonly Family[] = [vgg, resnet, inceptionV3, mobilenet, mobilenetV2, mobilenetV3];

/** Every variant name. */
export function variantNames(): string[] {
  return FAMILIES.flatMap((f) => f.variants.map((v) => v.name));
}

/** Resolves `arch` or `arch.tag`; an unknown name fails with the list of known names. */
export function resolveVariant(name: string): { family: Family; variant: Variant } {
  for (const family of FAMILIES) {
    const variant = family.variants.find((v) => v.name === name);
    if (variant) return { family, variant };
  }
  throw new ModelNotFoundError(`Unknown model '${name}'. Known models: ${variantNames().join(', ')}.`, {
    suggestion: 'Run `tl models` for the table, or pass the path of a model folder.',
  });
}

/** Builds a variant's graph with random weights. */
export function buildVariant(tf: Tf, name: string, options: BuildOptions): LayersModel {
  const { family, variant } = resolveVariant(name);
  return family.build(tf, variant, {
    includeTop: options.includeTop,
    classes: options.classes ?? variant.topClasses,
    inputSize: options.inputSize ?? variant.inputSize,
  });
}

/** One row of a model's layer table, as Keras's `model.layers` lists them. */
export interface LayerRow {
  index: number;
  name: string;
  className: string;
  params: number;
  outputShape: (number | null)[] | null;
}

/** The layer table of a built model. */
export function layerTable(model: LayersModel): LayerRow[] {
  return model.layers.map((layer, index) => {
    const shape = layer.outputShape;
    const single = Array.isArray(shape) && (shape.length === 0 || !Array.isArray(shape[0])) ? (shape as (number | null)[]) : null;
    return {
      index,
      name: layer.name,
      className: layer.getClassName(),
      params: layer.countParams(),
      outputShape: index === 0 ? null : single,
    };
  });
}
