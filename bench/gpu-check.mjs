// The GPU check's runner: times the graphs a prepared folder holds (bench/gpu.ts writes it) on every ONNX Runtime
// execution provider that opens here (cpu, webgpu, cuda), and says why the others do not. Plain JavaScript that needs
// only onnxruntime-node, so that a machine without the repository's node_modules (a lent GPU machine, with a carried
// Node.js) runs it too. Prints one JSON document on stdout.
// With --torch PYTHON, PyTorch runs the same work through bench/torch_reference.py on --device (default cuda).
//   node bench/gpu-check.mjs FOLDER [--ort PATH_TO_onnxruntime-node] [--providers cpu,webgpu,cuda] [--seconds 20]
//        [--torch python3 --device cuda]
import { spawnSync } from 'node:child_process';
import { openSync, readFileSync, writeSync, closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { ort: { type: 'string' }, providers: { type: 'string', default: 'cpu,webgpu,cuda' }, seconds: { type: 'string', default: '20' }, torch: { type: 'string' }, device: { type: 'string', default: 'cuda' } } });
const folder = resolve(positionals[0] ?? '.');
const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8'));
process.env.ORT_DISABLE_TELEMETRY ??= '1';
const ort = createRequire(import.meta.url)(values.ort ? resolve(values.ort) : 'onnxruntime-node');
const budget = Number(values.seconds) * 1000;

/** A reproducible pseudo-random stream (mulberry32): the values do not matter to the timings, their finiteness does. */
function stream(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes each graph's external weights (small random values) once: they are not shipped, only their sizes. */
function writeWeights(graph) {
  if (!graph.external) return;
  const path = join(folder, graph.external.file);
  if (existsSync(path)) return;
  const fd = openSync(path, 'w');
  const random = stream(7);
  const chunk = new Float32Array(1 << 20);
  for (let left = graph.external.bytes / 4; left > 0; left -= chunk.length) {
    const n = Math.min(left, chunk.length);
    for (let i = 0; i < n; i++) chunk[i] = (random() - 0.5) * 0.1;
    writeSync(fd, new Uint8Array(chunk.buffer, 0, n * 4));
  }
  closeSync(fd);
}

function tensorOf(spec, random) {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.type === 'int64') return new ort.Tensor('int64', BigInt64Array.from({ length: count }, (_, i) => BigInt(i % (spec.classes ?? 2))), spec.shape);
  const data = new Float32Array(count);
  if (spec.fill === 'ones') data.fill(1);
  else if (spec.fill === 'zeros') data.fill(0);
  else if (typeof spec.fill === 'number') data.fill(spec.fill);
  else for (let i = 0; i < count; i++) data[i] = spec.fill === 'relu' ? Math.max(0, random() - 0.3) : (random() - 0.5) * 0.1;
  return new ort.Tensor('float32', data, spec.shape);
}

/** The reason in an ONNX Runtime error's first line (after its source location and failed check). */
const firstLine = (err) => {
  const line = String(err?.message ?? err).split('\n')[0];
  return (/was false\.\s*(.+)$/.exec(line)?.[1] ?? line.replace(/^\S*onnxruntime_src\S*\s*/, '')).trim().slice(0, 200);
};

/** Why a provider cannot be tried at all here, or null: the CUDA provider's library comes from a separate download. */
function unavailable(provider) {
  if (provider !== 'cuda') return null;
  const dir = dirname(createRequire(import.meta.url).resolve(values.ort ? join(resolve(values.ort), 'package.json') : 'onnxruntime-node/package.json'));
  const lib = join(dir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so');
  return existsSync(lib) ? null : "onnxruntime-node's CUDA provider library is not installed (its install script fetches it: tl doctor --add-cuda)";
}

async function timeGraph(graph, provider) {
  const options = { executionProviders: [provider], graphOptimizationLevel: 'all', interOpNumThreads: 1 };
  // On WebGPU the weights and optimizer slots a step updates stay on the device from one run to the next.
  const carried = graph.carried ?? [];
  if (provider === 'webgpu' && carried.length > 0) options.preferredOutputLocation = Object.fromEntries(carried.map(([, output]) => [output, 'gpu-buffer']));
  const session = await ort.InferenceSession.create(join(folder, graph.file), options);
  const random = stream(11);
  const feeds = Object.fromEntries(graph.inputs.map((spec) => [spec.name, tensorOf(spec, random)]));
  const run = async () => {
    const out = await session.run(feeds);
    for (const [input, output] of carried) feeds[input] = out[output];
    for (const name of graph.check ?? []) {
      const value = out[name];
      if (value.location === 'cpu' && !Number.isFinite(value.data[0])) throw new Error(`${name} is not finite`);
    }
  };
  const t0 = performance.now();
  await run();
  const first = performance.now() - t0;
  await run();
  const times = [];
  const started = performance.now();
  while (times.length < (graph.runs ?? 10) && performance.now() - started < budget) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  await session.release();
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  return { ms, runs: times.length, firstMs: first, imgPerS: (1000 * graph.batch) / ms };
}

const results = [];
for (const graph of manifest.graphs) {
  writeWeights(graph);
  for (const provider of values.providers.split(',')) {
    const why = unavailable(provider);
    if (why) {
      results.push({ graph: graph.name, kind: graph.kind, batch: graph.batch, provider, error: why });
      continue;
    }
    try {
      results.push({ graph: graph.name, kind: graph.kind, batch: graph.batch, provider, ...(await timeGraph(graph, provider)) });
    } catch (err) {
      results.push({ graph: graph.name, kind: graph.kind, batch: graph.batch, provider, error: firstLine(err) });
    }
  }
}
/** PyTorch's side: extraction at the extraction graphs' batch, the caching loop's step at the step graphs'. */
function torchPeer(python, device) {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'torch_reference.py');
  const run = (args) => {
    const r = spawnSync(python, [script, ...args, '--device', device], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    if (r.status !== 0) throw new Error((r.stderr || r.error?.message || 'failed').trim().split('\n').pop());
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  try {
    const out = { device, torch: '', extract: {}, step: {} };
    for (const graph of manifest.graphs) {
      const model = graph.name.split(' ')[0];
      const r = graph.kind === 'extract' ? run(['extract', '--model', model, '--batch-size', String(graph.batch), '--steps', '20']) : run(['tailstep', '--model', model, '--batch-size', String(graph.batch), '--steps', '20']);
      if (graph.kind === 'extract') out.extract[model] = r.img_per_s;
      else out.step[model] = r.ms_per_step;
      out.torch = r.torch ?? out.torch;
    }
    return out;
  } catch (err) {
    return { error: firstLine(err) };
  }
}

const torch = values.torch ? torchPeer(values.torch, values.device) : undefined;
process.stdout.write(`${JSON.stringify({ ort: ort.env?.versions ?? null, node: process.version, date: new Date().toISOString(), cpu: cpus()[0]?.model ?? 'unknown CPU', cores: availableParallelism(), results, ...(torch ? { torch } : {}) })}\n`);
