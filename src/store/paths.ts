// Where each kind of pretrained weights lives in the model store: read by the weight loaders and by `tl models`.
import { basename, join } from 'node:path';

/** The nsfwjs release whose bundled models tl extracts (the dependency's exact version). */
export const NSFWJS_VERSION = '4.4.0';

/** Where a Keras weight file lives in the store. */
export function kerasStorePath(store: string, url: string): string {
  return join(store, 'weights', 'keras', basename(new URL(url).pathname));
}

/** Folder in the store holding an extracted nsfwjs model's model.json and shards. */
export function nsfwjsFolder(storeRoot: string, model: string): string {
  return join(storeRoot, 'weights', `nsfwjs-${NSFWJS_VERSION}`, model);
}
