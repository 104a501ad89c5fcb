// `tl serve`: a classifier tl wrote (a run's model.onnx or an exported .onnx file) behind HTTP on ONNX Runtime.
// POST /predict takes one image (its bytes, or a multipart form with one file) and answers its top-k labels;
// concurrent requests are batched (see batcher.ts). Bodies and pixel counts are bounded; a bad image is a 400 with
// the reason. close() stops accepting, finishes the requests in flight, then releases the session.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import busboy from 'busboy';
import { decodeFailureReason, decodeImage } from '../data/decode.js';
import { DEFAULT_MAX_PIXELS, DEFAULT_RESIZE } from '../data/modes.js';
import { preprocessPixels } from '../data/preprocess.js';
import { RUN_FILES, runFile } from '../data/run-files.js';
import { EnvironmentError, ModelNotFoundError } from '../errors.js';
import { answerOf } from '../inference/answer.js';
import { loadOnnxClassifier, type OnnxClassifier } from '../inference/onnx-file.js';
import { sh } from '../shard/slurm.js';
import { DynamicBatcher, type BatcherStats } from './batcher.js';

export interface ServeOptions {
  /** A run folder (its model.onnx) or a .onnx file tl wrote. */
  model: string;
  host: string;
  /** 0: any free port. */
  port: number;
  maxBatch: number;
  maxWaitMs: number;
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: number;
  maxPixels?: number;
  /** Labels answered per image unless the request asks (?top=k). */
  top: number;
  /** ONNX Runtime intra-op threads (default: every core). */
  threads?: number;
}

export interface ServeStats extends BatcherStats {
  requests: number;
  /** Requests answered with a 4xx. */
  rejected: number;
}

export interface Serving {
  url: string;
  model: OnnxClassifier;
  stats(): ServeStats;
  /** Stops accepting connections, answers the requests in flight, releases the model. */
  close(): Promise<void>;
}

/** An answer with a status other than 200. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The .onnx file `spec` names: a run folder's model.onnx, or the file itself. */
async function modelFile(spec: string): Promise<string> {
  const s = await stat(spec).catch(() => null);
  if (!s) throw new ModelNotFoundError(`No model at ${spec}.`);
  if (!s.isDirectory()) return spec;
  const file = runFile(spec, 'onnx');
  if (!(await stat(file).catch(() => null))) throw new ModelNotFoundError(`${spec} has no ${RUN_FILES.onnx} to serve.`, { suggestion: `Write one with: tl export ${sh(spec)} --format onnx --out ${sh(file)}` });
  return file;
}

/** The request's body, up to `limit` bytes (413 beyond): the raw bytes, or the one file of a multipart form. */
function readImageBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.reject(new HttpError(413, `the body is ${declared} bytes; this server takes at most ${limit}`));
  const type = req.headers['content-type'] ?? '';
  return new Promise((resolve, reject) => {
    const tooLarge = () => new HttpError(413, `the body is over ${limit} bytes, the most this server takes`);
    if (/^multipart\/form-data/i.test(type)) {
      let form: busboy.Busboy;
      try {
        form = busboy({ headers: req.headers, limits: { files: 1, fileSize: limit, fields: 20, parts: 21 } });
      } catch (err) {
        reject(new HttpError(400, `a malformed multipart form (${(err as Error).message})`));
        return;
      }
      let file: Promise<Buffer> | null = null;
      form.on('file', (_name, stream) => {
        file = new Promise((ok, fail) => {
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('limit', () => fail(tooLarge()));
          stream.on('end', () => ok(Buffer.concat(chunks)));
        });
      });
      form.on('error', (err: Error) => reject(new HttpError(400, `a malformed multipart form (${err.message})`)));
      form.on('close', () => {
        if (!file) reject(new HttpError(400, 'the multipart form has no file: send the image as a file field'));
        else file.then(resolve, reject);
      });
      req.pipe(form);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(tooLarge());
        req.pause();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) });
  res.end(text);
}

/** Starts the server; it listens when this resolves. */
export async function startServer(options: ServeOptions): Promise<Serving> {
  const model = await loadOnnxClassifier(await modelFile(options.model));
  const session = await model.open({ ...(options.threads ? { threads: options.threads } : {}), spinning: false });
  const size = model.inputSize;
  const width = model.classes.length;
  const batcher = new DynamicBatcher<Float32Array, Float32Array>(async (images) => {
    const input = new Float32Array(images.length * size * size * 3);
    images.forEach((x, i) => input.set(x, i * x.length));
    const [out] = await session.run([{ data: input, shape: [images.length, size, size, 3] }]);
    return images.map((_, i) => out!.slice(i * width, (i + 1) * width));
  }, { maxBatch: options.maxBatch, maxWaitMs: options.maxWaitMs, coming: () => coming });
  const decode = { size, resize: model.resize ?? DEFAULT_RESIZE, maxPixels: options.maxPixels ?? DEFAULT_MAX_PIXELS };
  const counts = { requests: 0, rejected: 0 };
  let inFlight = 0;
  /** Requests on their way to the batcher (body being read, image being decoded): they join the next batch soon. */
  let coming = 0;
  let draining = false;
  let drained: (() => void) | null = null;

  const predict = async (req: IncomingMessage, url: URL): Promise<unknown> => {
    const topParam = url.searchParams.get('top');
    const top = topParam === null ? options.top : Number(topParam);
    if (!Number.isInteger(top) || top < 1) throw new HttpError(400, `?top= must be a whole number from 1 (got ${JSON.stringify(topParam)})`);
    const started = performance.now();
    let input: Float32Array;
    coming += 1;
    try {
      const body = await readImageBody(req, options.maxBodyBytes);
      if (body.length === 0) throw new HttpError(400, 'the body is empty: send the image bytes, or a multipart form with one file');
      const pixels = await decodeImage(body, decode).catch((err: unknown) => {
        throw new HttpError(400, `not an image this server can read: ${decodeFailureReason(err)}`);
      });
      input = preprocessPixels(pixels, model.preprocess);
    } finally {
      coming -= 1;
    }
    const probs = await batcher.submit(input);
    // Several labels per image: the labels at or above their thresholds too, as tl predict gives them.
    return { ...answerOf(probs, model.classes, Math.min(top, width), model.thresholds), ms: Math.round((performance.now() - started) * 100) / 100 };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = `${req.method ?? ''} ${url.pathname}`;
    if (route === 'GET /health') return send(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok', inFlight, ...counts, ...batcher.stats() });
    if (route === 'GET /model') return send(res, 200, { model: model.name, labels: model.classes, inputSize: size, preprocess: model.preprocess, resize: decode.resize, sha256: model.digest, maxBatch: options.maxBatch, maxWaitMs: options.maxWaitMs, metadata: model.metadata });
    if (url.pathname === '/predict' && req.method !== 'POST') return send(res, 405, { error: 'POST an image to /predict' });
    if (route !== 'POST /predict') return send(res, 404, { error: `no ${url.pathname} here: POST /predict, GET /health, GET /model` });
    counts.requests += 1;
    try {
      send(res, 200, await predict(req, url), draining);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      counts.rejected += 1;
      // Unread body bytes would be taken for the next request on this connection: close it.
      send(res, err.status, { error: err.message }, true);
    }
  };

  const server = createServer((req, res) => {
    inFlight += 1;
    handle(req, res)
      .catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { error: err instanceof Error ? err.message.split('\n')[0] : String(err) }, true);
      })
      .finally(() => {
        inFlight -= 1;
        if (inFlight === 0) drained?.();
      });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new EnvironmentError(`Cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}.`, { suggestion: err.code === 'EADDRINUSE' ? 'Pick another --port, or stop what uses it.' : 'Check --host and --port.' })));
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${address.port}`,
    model,
    stats: () => ({ ...counts, ...batcher.stats() }),
    close: () => {
      closing ??= (async () => {
        draining = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
        server.closeAllConnections();
        await stopped;
        await session.close();
      })();
      return closing;
    },
  };
}
