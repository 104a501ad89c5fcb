// Extracts the LayersModels bundled in the nsfwjs npm package (JS modules with base64 shards) into the model store.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { WeightsError } from '../errors.js';
import { tempPathFor } from '../util/atomic.js';

const require = createRequire(import.meta.url);
export const NSFWJS_VERSION = '4.4.0';

/** The installed nsfwjs package folder. */
function packageDir(): string {
  let entry: string;
  try {
    entry = require.resolve('nsfwjs');
  } catch (err) {
    throw new WeightsError('The nsfwjs package is not installed; its bundled models are unavailable.', { cause: err, suggestion: `npm install nsfwjs@${NSFWJS_VERSION}` });
  }
  let dir = dirname(entry);
  while (!existsSync(join(dir, 'package.json')) || !dir.endsWith('nsfwjs')) {
    const parent = dirname(dir);
    if (parent === dir) throw new WeightsError(`Cannot find the nsfwjs package folder above ${entry}.`);
    dir = parent;
  }
  return dir;
}

/** Folder in the store holding the extracted model.json and shards. */
export function nsfwjsFolder(storeRoot: string, model: string): string {
  return join(storeRoot, 'weights', `nsfwjs-${NSFWJS_VERSION}`, model);
}

/**
 * Extracts nsfwjs's bundled `model` once into the store and returns the model.json path. Concurrent callers
 * each write a private temp folder; the first rename wins and the others discard theirs.
 */
export async function extractNsfwjsModel(storeRoot: string, model: 'mobilenet_v2' | 'inception_v3'): Promise<string> {
  const folder = nsfwjsFolder(storeRoot, model);
  const modelJson = join(folder, 'model.json');
  if (existsSync(modelJson)) return modelJson;
  const source = join(packageDir(), 'dist', 'models', model);
  const json = require(join(source, 'model.min.js')) as { modelTopology: unknown; weightsManifest: { paths: string[] }[] };
  await mkdir(dirname(folder), { recursive: true });
  const tmp = tempPathFor(folder);
  await mkdir(tmp);
  try {
    const paths = json.weightsManifest.flatMap((g) => g.paths);
    for (const p of paths) {
      const base64 = require(join(source, `${p}.min.js`)) as string;
      await writeFile(join(tmp, p), Buffer.from(base64, 'base64'));
    }
    await writeFile(join(tmp, 'model.json'), JSON.stringify({ ...json, format: 'layers-model', generatedBy: `nsfwjs ${NSFWJS_VERSION}` }));
    try {
      await rename(tmp, folder);
    } catch (err) {
      if (!existsSync(modelJson)) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return modelJson;
}
