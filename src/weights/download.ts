// Downloads into the model store: bounded in size and time, to a temp file, hash-checked, then renamed. Concurrent
// fetches never corrupt; an interrupted one leaves nothing behind.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { atPath, InterruptedError, WeightsError } from '../errors.js';
import { checkStored, CHECK_WORDS, hashAlgorithm, recordStored } from '../store/verified.js';
import { sweepStaleTemps, tempPathFor, untrackTemp } from '../util/atomic.js';
import { notice } from '../util/notice.js';

export interface DownloadProgress {
  url: string;
  bytes: number;
  total: number | null;
  bytesPerSecond: number;
}

export interface DownloadOptions {
  /** Expected md5 (32 hex) or sha256 (64 hex); null records the first download's sha256 and checks it later. */
  hash: string | null;
  /** The most bytes the file may have; a larger Content-Length is refused and a longer body is cut off. */
  maxBytes: number;
  /** Seconds without a byte (or without response headers) before the transfer is abandoned. */
  timeoutSeconds?: number;
  onProgress?: (p: DownloadProgress) => void;
  fetchImpl?: typeof fetch;
  /**
   * Where the file may come from, redirects included: each hop's URL is passed to it and it throws to refuse. Without
   * it, redirects are followed as fetch follows them (files checked against a published hash).
   */
  allowUrl?: (url: string) => void;
  /** Aborted (with 'SIGINT' or 'SIGTERM' as its reason) to stop the transfer at once. */
  signal?: AbortSignal;
  /** Counts this download's requests (redirect hops included) against a caller's limit; throws to refuse one more. */
  onRequest?: (url: string) => void;
}

/** The most redirects one download follows. */
const MAX_REDIRECTS = 5;

/** Seconds a stalled transfer waits: $TL_DOWNLOAD_TIMEOUT, default 30. */
export function downloadTimeoutSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env['TL_DOWNLOAD_TIMEOUT']);
  return Number.isFinite(value) && value > 0 ? value : 30;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** Ensures `dest` holds the verified file from `url`, downloading it when needed; returns its path. */
export async function download(url: string, dest: string, options: DownloadOptions): Promise<string> {
  const check = await checkStored(dest, options.hash);
  if (check === 'ok') return dest;
  if (check !== 'missing') notice(`${dest} ${CHECK_WORDS[check]}; downloading it again from ${url}`);
  await mkdir(dirname(dest), { recursive: true });
  for (const path of sweepStaleTemps(dirname(dest))) notice(`removed ${path}, left by an interrupted download`);
  const tmp = tempPathFor(dest);
  const fetchImpl = options.fetchImpl ?? fetch;
  const timeout = (options.timeoutSeconds ?? downloadTimeoutSeconds()) * 1000;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(), timeout);
  };
  const interrupted = () => {
    const signal = options.signal?.reason === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
    return new InterruptedError(signal, `Interrupted by ${signal} while downloading ${url}; the partial file was removed.`);
  };
  const stalled = () => (options.signal?.aborted ? interrupted() : new WeightsError(`Download of ${url} stalled: nothing received for ${timeout / 1000} s.`, { suggestion: 'Try again later, or raise TL_DOWNLOAD_TIMEOUT (seconds).' }));
  const onAbort = () => abort.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (options.signal?.aborted) throw interrupted();
    let response: Response;
    arm();
    try {
      response = await fetchChecked(fetchImpl, url, abort.signal, options);
    } catch (err) {
      if (err instanceof WeightsError) throw err;
      if (abort.signal.aborted) throw stalled();
      // A file already in place that failed its check is the likelier story offline: say so first.
      const placed = check === 'missing' ? '' : `${dest} ${CHECK_WORDS[check]}${check === 'mismatch' && options.hash ? ` (expected ${hashAlgorithm(options.hash)} ${options.hash})` : ''}, and `;
      throw new WeightsError(`${placed}${placed ? 'c' : 'C'}annot download ${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`, {
        cause: err,
        suggestion: `Download it elsewhere and run \`tl models import FILE\` (it checks the file and places it at ${dest}), or use --weights random.`,
      });
    }
    if (!response.ok || response.body === null) throw new WeightsError(`Cannot download ${url}: HTTP ${response.status} ${response.statusText}`);
    const header = response.headers.get('content-length');
    // fetch decodes a compressed body: its Content-Length then counts the compressed bytes, not the ones received.
    const encoded = !['', 'identity'].includes((response.headers.get('content-encoding') ?? '').trim().toLowerCase());
    const total = header !== null && /^\d+$/.test(header.trim()) && !encoded ? Number(header) : null;
    if (total !== null && total > options.maxBytes) {
      await response.body.cancel().catch(() => {});
      throw new WeightsError(`Refused ${url}: the server announces ${total} bytes (${mib(total)}); at most ${options.maxBytes} (${mib(options.maxBytes)}) are expected.`);
    }
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    const started = performance.now();
    let bytes = 0;
    const file = createWriteStream(tmp);
    const closed = new Promise<void>((resolve, reject) => file.on('close', resolve).on('error', (err) => reject(atPath(err, dest))));
    const reader = response.body.getReader();
    try {
      for (;;) {
        arm();
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (abort.signal.aborted) throw stalled();
          throw new WeightsError(`Download of ${url} broke off after ${bytes} bytes${total ? ` of ${total}` : ''}: ${(err as Error).message}`, { cause: err });
        }
        if (chunk.done) break;
        bytes += chunk.value.length;
        if (bytes > options.maxBytes) throw new WeightsError(`Refused ${url}: it sent more than the ${options.maxBytes} bytes (${mib(options.maxBytes)}) expected; the transfer was stopped.`);
        md5.update(chunk.value);
        sha256.update(chunk.value);
        if (!file.write(chunk.value)) await new Promise<void>((resolve, reject) => file.once('drain', () => resolve()).once('error', reject));
        options.onProgress?.({ url, bytes, total, bytesPerSecond: bytes / Math.max(1e-3, (performance.now() - started) / 1000) });
      }
    } finally {
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
      file.end();
      await closed;
    }
    if (total !== null && bytes !== total) throw new WeightsError(`Download of ${url} is truncated: ${bytes} of ${total} bytes.`);
    const digests = { md5: md5.digest('hex'), sha256: sha256.digest('hex') };
    if (options.hash !== null) {
      const got = digests[hashAlgorithm(options.hash)];
      if (got !== options.hash.toLowerCase()) {
        throw new WeightsError(`${url} failed its integrity check: expected ${hashAlgorithm(options.hash)} ${options.hash}, got ${got}. The file was deleted.`);
      }
    }
    await rename(tmp, dest);
    if (options.hash === null) await recordStored(dest, digests.sha256);
    return dest;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await rm(tmp, { force: true });
    untrackTemp(tmp);
  }
}

/**
 * The response for `url`. With `allowUrl`, redirects are followed by hand so that every hop is checked before it is
 * requested; each request is counted with `onRequest`.
 */
async function fetchChecked(fetchImpl: typeof fetch, url: string, signal: AbortSignal, options: DownloadOptions): Promise<Response> {
  let current = url;
  for (let hop = 0; ; hop++) {
    options.allowUrl?.(current);
    options.onRequest?.(current);
    const response = await fetchImpl(current, { signal, redirect: options.allowUrl ? 'manual' : 'follow' });
    if (!options.allowUrl || response.status < 300 || response.status > 399 || response.status === 304) return response;
    const location = response.headers.get('location');
    await response.body?.cancel().catch(() => {});
    if (location === null) throw new WeightsError(`Cannot download ${url}: HTTP ${response.status} without a Location.`);
    if (hop >= MAX_REDIRECTS) throw new WeightsError(`Cannot download ${url}: more than ${MAX_REDIRECTS} redirects.`);
    let next: string;
    try {
      next = new URL(location, current).href;
    } catch {
      throw new WeightsError(`Cannot download ${url}: it redirects to '${location}', not a URL.`);
    }
    current = next;
  }
}
