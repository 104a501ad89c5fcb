// A LayersModel fetched from an http(s) URL into the model store: every request stays in the model.json's folder, and
// the weights' size and shard count are checked against limits before any shard is fetched.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { WeightsError } from '../errors.js';
import { download, type DownloadProgress } from './download.js';
import { groupBytes, MAX_MODEL_JSON_BYTES, readModelJson, shardPath } from './tfjs.js';

/** Refuses a URL that leaves the origin and folder of the model.json at `modelJsonUrl` (a redirect hop included). */
function confinedTo(modelJsonUrl: string): (url: string) => void {
  const base = new URL(modelJsonUrl);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  return (url) => {
    const target = new URL(url);
    if (target.origin !== base.origin || !target.pathname.startsWith(folder)) {
      throw new WeightsError(`${url} is outside ${base.origin}${folder}, where ${modelJsonUrl} keeps its files (a redirect there is refused too).`, { suggestion: 'A model served over HTTP must keep model.json and its shards in one folder of one server.' });
    }
  };
}

/**
 * The URL of a shard listed in the model.json at `modelJsonUrl`: resolved as a browser would (percent-escapes and
 * backslashes included), and refused unless it has the model.json's origin and lies under its folder.
 */
export function shardUrl(modelJsonUrl: string, path: string): string {
  const base = new URL(modelJsonUrl);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  let target: URL;
  try {
    target = new URL(path, base);
  } catch {
    throw new WeightsError(`Shard path '${path}' in ${modelJsonUrl} is not a valid relative URL; refused.`);
  }
  if (target.origin !== base.origin || !target.pathname.startsWith(folder) || target.pathname === folder || path.includes('\\')) {
    throw new WeightsError(`Shard path '${path}' in ${modelJsonUrl} resolves to ${target.href}, outside ${base.origin}${folder}; refused.`, { suggestion: 'A model served over HTTP must keep its shards beside model.json.' });
  }
  return target.href;
}

/** Limits of a model fetched from a URL: $TL_MAX_MODEL_BYTES (default 2 GiB of weights) and $TL_MAX_MODEL_SHARDS (1000). */
export function urlModelLimits(env: NodeJS.ProcessEnv = process.env): { bytes: number; shards: number } {
  const read = (name: string, fallback: number) => {
    const v = Number(env[name]);
    return Number.isInteger(v) && v > 0 ? v : fallback;
  };
  return { bytes: read('TL_MAX_MODEL_BYTES', 2 * 2 ** 30), shards: read('TL_MAX_MODEL_SHARDS', 1000) };
}

/**
 * Downloads a LayersModel (model.json and its shards) from a URL into the store; returns the local model.json. Every
 * request (redirects included) stays in the model.json's folder; the weights' total size and shard count are checked
 * against the limits before any shard is fetched, and the bytes received count against that total.
 */
export async function fetchLayersModel(url: string, store: string, onDownload?: (p: DownloadProgress) => void, signal?: AbortSignal): Promise<string> {
  const folder = join(store, 'weights', 'url', createHash('sha256').update(url).digest('hex').slice(0, 16));
  const local = join(folder, 'model.json');
  const limits = urlModelLimits();
  const allowUrl = confinedTo(url);
  let requests = 0;
  let maxRequests = 2 * (1 + MAX_HOPS);
  const onRequest = (at: string) => {
    if (++requests > maxRequests) throw new WeightsError(`Refused ${at}: the model at ${url} needed more than ${maxRequests} requests.`);
  };
  const common = { hash: null, allowUrl, onRequest, ...(onDownload ? { onProgress: onDownload } : {}), ...(signal ? { signal } : {}) };
  await download(url, local, { ...common, maxBytes: MAX_MODEL_JSON_BYTES });
  const json = await readModelJson(local);
  // Every shard is checked before any is fetched: its URL stays beside model.json, its file inside the folder.
  const shards = json.weightsManifest.flatMap((g) => g.paths.map((path) => ({ url: shardUrl(url, path), target: shardPath(folder, path), maxBytes: groupBytes(g) })));
  const total = json.weightsManifest.reduce((n, g) => n + groupBytes(g), 0);
  const suggestion = 'Raise TL_MAX_MODEL_BYTES / TL_MAX_MODEL_SHARDS if the model is genuine.';
  if (total > limits.bytes) throw new WeightsError(`Refused ${url}: its manifest describes ${total} bytes of weights; at most ${limits.bytes} (TL_MAX_MODEL_BYTES) are fetched.`, { suggestion });
  if (shards.length > limits.shards) throw new WeightsError(`Refused ${url}: its manifest lists ${shards.length} shards; at most ${limits.shards} (TL_MAX_MODEL_SHARDS) are fetched.`, { suggestion });
  maxRequests = (1 + shards.length) * (1 + MAX_HOPS);
  let left = total;
  for (const shard of shards) {
    await download(shard.url, shard.target, { ...common, maxBytes: Math.min(shard.maxBytes, left) });
    left -= statSync(shard.target).size;
  }
  return local;
}

/** Redirect hops a request may take (download follows at most 5). */
const MAX_HOPS = 5;
