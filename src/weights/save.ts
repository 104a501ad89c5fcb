// Writes a LayersModel as a tfjs model folder (model.json + weights.bin), atomically.
import { join } from 'node:path';
import type { LayersModel, Tf } from '../backend/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';

/** Saves `model` into `dir` so that tf.loadLayersModel reads it anywhere; weights first, model.json last. */
export async function saveLayersModel(tf: Tf, model: LayersModel, dir: string, metadata: Record<string, unknown> = {}): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const joined = data === undefined ? new ArrayBuffer(0) : Array.isArray(data) ? tf.io.CompositeArrayBuffer.join(data) : data;
      await writeFileAtomic(join(dir, 'weights.bin'), new Uint8Array(joined));
      await writeJsonAtomic(join(dir, 'model.json'), {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
        userDefinedMetadata: metadata,
      });
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}
