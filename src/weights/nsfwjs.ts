// Extracts the LayersModels bundled in the nsfwjs npm package (JS modules with base64 shards) into the model store.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { atPath, WeightsError } from '../errors.js';
import { nsfwjsFolder, NSFWJS_VERSION } from '../store/paths.js';
import { checkStored, CHECK_WORDS, sidecar } from '../store/verified.js';
import { sweepStaleTemps, tempPathFor, untrackTemp } from '../util/atomic.js';
import { notice } from '../util/notice.js';

const require = createRequire(import.meta.url);

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

/** The first file of an extracted folder that fails its recorded hash, with why, or null when all pass. */
async function damaged(folder: string, files: string[]): Promise<string | null> {
  for (const file of files) {
    const check = await checkStored(join(folder, file));
    if (check !== 'ok') return `${file} ${CHECK_WORDS[check]}`;
  }
  return null;
}

/**
 * Extracts nsfwjs's bundled `model` into the store (each file with its sha256 recorded) and returns the model.json
 * path. An extraction that fails its check (damaged, incomplete, from an older tl) is replaced, with a notice.
 * Concurrent callers each write a private temp folder; the first rename wins and the others discard theirs.
 */
export async function extractNsfwjsModel(storeRoot: string, model: 'mobilenet_v2' | 'inception_v3'): Promise<string> {
  const folder = nsfwjsFolder(storeRoot, model);
  const modelJson = join(folder, 'model.json');
  const source = join(packageDir(), 'dist', 'models', model);
  const json = require(join(source, 'model.min.js')) as { modelTopology: unknown; weightsManifest: { paths: string[] }[] };
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  const files = ['model.json', ...paths];
  if (existsSync(folder)) {
    const why = await damaged(folder, files);
    if (why === null) return modelJson;
    notice(`the extracted nsfwjs model in ${folder} failed its integrity check (${why}); extracting it again`);
    await rm(folder, { recursive: true, force: true });
  }
  await mkdir(dirname(folder), { recursive: true });
  for (const leftover of sweepStaleTemps(dirname(folder))) notice(`removed ${leftover}, left by an interrupted run`);
  const tmp = tempPathFor(folder);
  await mkdir(tmp);
  try {
    // A failed write(2) names no file: the error is given the path it was writing.
    const write = async (name: string, data: Buffer) => {
      const path = join(tmp, name);
      await writeFile(path, data).catch((err: unknown) => Promise.reject(atPath(err, path)));
      await writeFile(sidecar(path), `${createHash('sha256').update(data).digest('hex')}\n`).catch((err: unknown) => Promise.reject(atPath(err, sidecar(path))));
    };
    for (const p of paths) await write(p, Buffer.from(require(join(source, `${p}.min.js`)) as string, 'base64'));
    await write('model.json', Buffer.from(JSON.stringify({ ...json, format: 'layers-model', generatedBy: `nsfwjs ${NSFWJS_VERSION}` })));
    try {
      await rename(tmp, folder);
    } catch (err) {
      // Another process's rename won; its extraction is as good as ours.
      if (!existsSync(modelJson)) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
    untrackTemp(tmp);
  }
  return modelJson;
}
