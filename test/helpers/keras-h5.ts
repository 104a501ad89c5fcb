// Keras weight files written as Keras writes them (h5py layout), for tests.
import type { buildVariant } from '../../src/registry/index.js';

export type Layout = { fullModel: boolean; colonZero: boolean; splitAttrs: boolean; modelName?: string; modelConfig?: unknown };

/** Writes `model`'s weights as Keras does (h5py layout), in the variant of the layout asked for. */
export async function writeKerasFile(path: string, model: ReturnType<typeof buildVariant>, layout: Layout): Promise<void> {
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  const f = new h5wasm.File(path, 'w');
  const root = layout.fullModel ? f.create_group('model_weights') : f;
  if (layout.fullModel) f.create_attribute('model_config', JSON.stringify(layout.modelConfig ?? { class_name: 'Functional', config: layout.modelName ? { name: layout.modelName } : {} }));
  const names = model.layers.map((l) => l.name);
  if (layout.splitAttrs) {
    const half = Math.ceil(names.length / 2);
    root.create_attribute('layer_names0', names.slice(0, half));
    root.create_attribute('layer_names1', names.slice(half));
  } else {
    root.create_attribute('layer_names', names);
  }
  root.create_attribute('keras_version', '2.13.1');
  for (const layer of model.layers) {
    const g = root.create_group(layer.name);
    const weightNames = layer.weights.map((w) => `${layer.name}/${w.originalName.split('/').pop()}${layout.colonZero ? ':0' : ''}`);
    // h5py stores an empty list as an empty float64 array, as in Keras's own files.
    g.create_attribute('weight_names', weightNames.length ? weightNames : new Float64Array(0));
    layer.weights.forEach((w, i) => {
      const value = w.read().dataSync() as Float32Array;
      // h5py makes the intermediate group of 'layer/kernel:0' implicitly.
      const [groupName, datasetName] = weightNames[i]!.split('/') as [string, string];
      const sub = (g.get(groupName) ?? g.create_group(groupName)) as typeof g;
      sub.create_dataset({ name: datasetName, data: value, shape: w.shape as number[], dtype: '<f' });
    });
  }
  f.close();
}
