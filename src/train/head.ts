// The model that trains: the backbone with its classifier head.
import type { LayersModel, Tf } from '../backend/index.js';
import { applyTrainability, attachHead, type BnMode } from '../model/index.js';
import { initializeWeights } from '../registry/init.js';
import { notice } from '../util/notice.js';
import { mixSeed } from '../util/random.js';
import type { Backbone } from '../weights/backbone.js';
import type { RunOptions } from './types.js';

/**
 * A run's own classifier when `--model` is a run whose classes are the dataset's (continuing means continuing with
 * its head), else the backbone with a new head (initialised from the seed).
 */
export function classifier(tf: Tf, source: Backbone, classes: string[], options: RunOptions): LayersModel {
  const previous = source.withHead;
  const activation = options.multiLabel ? 'sigmoid' : 'softmax';
  const sameOutput = previous !== undefined && (previous.model.layers.at(-1)!.getConfig() as { activation?: string }).activation === activation;
  if (previous && sameOutput && previous.classes.length === classes.length && previous.classes.every((c, i) => c === classes[i])) {
    if (!options.resume) notice(`continuing with the classifier head of ${source.name} (its classes are the dataset's); --new-head trains a fresh one`);
    return previous.model;
  }
  if (previous) {
    if (!options.resume) notice(`a new classifier head replaces ${source.name}'s: ${sameOutput ? `its classes (${previous.classes.join(', ')}) are not the dataset's (${classes.join(', ')})` : `it has ${activation === 'sigmoid' ? 'one label' : 'several labels'} per image, this run ${activation === 'sigmoid' ? 'several' : 'one'}`}`);
    const kept = new Set(source.model.layers.map((l) => l.name));
    for (const layer of previous.model.layers) if (!kept.has(layer.name)) layer.dispose();
  }
  const layerCount = source.model.layers.length;
  const full = attachHead(tf, source.model, { classes: classes.length, ...(options.headHidden ? { hidden: options.headHidden } : {}), dropout: options.dropout, activation, name: `${source.name.split(' ')[0]!.replace(/\W/g, '_')}_finetuned` });
  initializeWeights(tf, full, mixSeed(options.seed, 17), new Set(full.layers.slice(layerCount).map((l) => l.name)));
  return full;
}

/** Trainable parameters of the last phase's setting. */
export function countTrainable(full: LayersModel, backbone: LayersModel, frozenCount: number, bn: BnMode): number {
  applyTrainability(full, new Set(backbone.layers.slice(0, frozenCount).map((l) => l.name)), bn);
  return full.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}
