// Writes a LayersModel as a tfjs model folder (model.json + weights.bin), atomically.
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import type { LayersModel, Tf } from '../backend/index.js';
import { customLayersModule } from '../registry/layers.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { quantizeWeights, type WeightQuantization, type WeightSpec } from './quantize.js';

/** The module a model needs beside it to load in plain TensorFlow.js (see customLayersModule). */
export const LAYERS_MODULE = 'tl-layers.mjs';

/**
 * Saves `model` into `dir` so that tf.loadLayersModel reads it anywhere; weights first, model.json last. A model with
 * layers TensorFlow.js lacks (MobileNetV3's) gets `tl-layers.mjs` beside it, which registers them. With `quantize`,
 * float32 weights are stored as float16 or uint8 (see quantize.ts).
 */
export async function saveLayersModel(tf: Tf, model: LayersModel, dir: string, metadata: Record<string, unknown> = {}, quantize?: WeightQuantization): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const joined = data === undefined ? new ArrayBuffer(0) : Array.isArray(data) ? tf.io.CompositeArrayBuffer.join(data) : data;
      const stored = quantize ? quantizeWeights((artifacts.weightSpecs ?? []) as WeightSpec[], joined, quantize) : { specs: artifacts.weightSpecs ?? [], data: new Uint8Array(joined) };
      await writeFileAtomic(join(dir, 'weights.bin'), stored.data);
      // TFOpLambda is tl's alone; tl's GlobalAveragePooling2D loads as TensorFlow.js's own unless it keeps dims.
      const custom = model.layers.some((l) => l.getClassName() === 'TFOpLambda' || (l.getClassName() === 'GlobalAveragePooling2D' && (l.getConfig() as { keepdims?: boolean }).keepdims === true));
      if (custom) await writeFileAtomic(join(dir, LAYERS_MODULE), customLayersModule());
      else await rm(join(dir, LAYERS_MODULE), { force: true });
      await writeJsonAtomic(join(dir, 'model.json'), {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: stored.specs }],
        userDefinedMetadata: metadata,
      });
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}
