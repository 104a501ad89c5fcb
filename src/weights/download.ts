// Downloads into the model store: temp file, progress, hash check, then rename. Concurrent fetches never corrupt.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WeightsError } from '../errors.js';
import { tempPathFor, writeFileAtomic } from '../util/atomic.js';

export interface DownloadProgress {
  url: string;
  bytes: number;
  total: number | null;
  bytesPerSecond: number;
}

export interface DownloadOptions {
  /** Expected md5 (32 hex) or sha256 (64 hex); null records the first download's sha256 and checks it later. */
  hash: string | null;
  onProgress?: (p: DownloadProgress) => void;
  fetchImpl?: typeof fetch;
}

function algorithm(hash: string): 'md5' | 'sha256' {
  if (/^[0-9a-f]{32}$/i.test(hash)) return 'md5';
  if (/^[0-9a-f]{64}$/i.test(hash)) return 'sha256';
  throw new WeightsError(`'${hash}' is neither an md5 nor a sha256 hex digest.`);
}

async function hashFile(path: string, algo: 'md5' | 'sha256'): Promise<string> {
  return createHash(algo).update(await readFile(path)).digest('hex');
}

/** Sidecar holding the sha256 recorded at the first download of a file Keras publishes no hash for. */
const sidecar = (path: string) => `${path}.sha256`;

/** Checks a stored file against the expected or recorded hash. */
export async function verifyStored(path: string, hash: string | null): Promise<boolean> {
  if (!existsSync(path)) return false;
  if (hash !== null) return (await hashFile(path, algorithm(hash))) === hash.toLowerCase();
  if (!existsSync(sidecar(path))) return false;
  return (await hashFile(path, 'sha256')) === (await readFile(sidecar(path), 'utf8')).trim();
}

/** Ensures `dest` holds the verified file from `url`, downloading it when needed; returns its path. */
export async function download(url: string, dest: string, options: DownloadOptions): Promise<string> {
  if (await verifyStored(dest, options.hash)) return dest;
  await mkdir(dirname(dest), { recursive: true });
  const tmp = tempPathFor(dest);
  const fetchImpl = options.fetchImpl ?? fetch;
  try {
    let response: Response;
    try {
      response = await fetchImpl(url);
    } catch (err) {
      throw new WeightsError(`Cannot download ${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`, {
        cause: err,
        suggestion: `Download it elsewhere and place it at ${dest}, or use --weights random.`,
      });
    }
    if (!response.ok || response.body === null) throw new WeightsError(`Cannot download ${url}: HTTP ${response.status} ${response.statusText}`);
    const total = Number(response.headers.get('content-length')) || null;
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    const started = performance.now();
    let bytes = 0;
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      md5.update(chunk);
      sha256.update(chunk);
      options.onProgress?.({ url, bytes, total, bytesPerSecond: bytes / Math.max(1e-3, (performance.now() - started) / 1000) });
    });
    try {
      await pipeline(body, createWriteStream(tmp));
    } catch (err) {
      throw new WeightsError(`Download of ${url} broke off after ${bytes} bytes${total ? ` of ${total}` : ''}: ${(err as Error).message}`, { cause: err });
    }
    if (total !== null && bytes !== total) throw new WeightsError(`Download of ${url} is truncated: ${bytes} of ${total} bytes.`);
    const digests = { md5: md5.digest('hex'), sha256: sha256.digest('hex') };
    if (options.hash !== null) {
      const got = digests[algorithm(options.hash)];
      if (got !== options.hash.toLowerCase()) {
        throw new WeightsError(`${url} failed its integrity check: expected ${algorithm(options.hash)} ${options.hash}, got ${got}. The file was deleted.`);
      }
    } else {
      await writeFileAtomic(sidecar(dest), `${digests.sha256}\n`);
    }
    await rename(tmp, dest);
    return dest;
  } finally {
    await rm(tmp, { force: true });
  }
}
