// The GPU check: the frozen part (feature extraction) and the cached train step of MobileNetV2 --freeze 100 and
// ResNet50 --freeze 140 on every ONNX Runtime execution provider that opens (cpu, webgpu, cuda), beside PyTorch on
// CUDA. `npm run bench -- --gpu` runs it here; `npm run bench -- --gpu-bundle DIR` writes what a machine without
// Node.js or this repository's node_modules needs to run it (see bench/gpu-run.sh), and `--gpu-report FILE` turns
// the JSON that run returns into BENCHMARKS.md's section.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Tf } from '../src/backend/index.js';
import { FLOAT, onnx } from '../src/onnx/graph.js';
import { exportOnnx } from '../src/onnx/export.js';
import { loadFeatureModel } from '../src/inference/index.js';
import { tailGraph } from './step-profile.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface InputSpec {
  name: string;
  type: 'float32' | 'int64';
  shape: number[];
  fill?: 'random' | 'relu' | 'ones' | 'zeros' | number;
  classes?: number;
}

interface GraphSpec {
  name: string;
  kind: 'extract' | 'step';
  file: string;
  batch: number;
  external?: { file: string; bytes: number };
  inputs: InputSpec[];
  /** Step graphs: [input, output] pairs fed back from one run to the next (weights, slots). */
  carried?: [string, string][];
  check?: string[];
  runs?: number;
}

/**
 * The model with every float initializer over 4 KiB moved to external data (`file`, page-aligned offsets) and its
 * bytes dropped: the runner writes random values there, so that ResNet50's 98 MB of weights never travel.
 */
function externalized(bytes: Uint8Array, file: string): { bytes: Uint8Array; external: { file: string; bytes: number } | null } {
  const model = onnx.ModelProto.decode(bytes);
  let offset = 0;
  for (const t of model.graph?.initializer ?? []) {
    const length = t.rawData?.length ?? 0;
    if (t.dataType !== FLOAT || length <= 4096) continue;
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [{ key: 'location', value: file }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }];
    t.rawData = new Uint8Array(0);
    offset += Math.ceil(length / 4096) * 4096;
  }
  return { bytes: onnx.ModelProto.encode(model).finish(), external: offset > 0 ? { file, bytes: offset } : null };
}

/** Writes the check's graphs and manifest into `dir` (random weights: the timings do not depend on them). */
export async function prepareGpuCheck(tf: Tf, dir: string, options: { extractBatch?: number; stepBatch?: number } = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const graphs: GraphSpec[] = [];
  const extractBatch = options.extractBatch ?? 64;
  const stepBatch = options.stepBatch ?? 16;
  for (const [model, freeze] of [['mobilenet_v2', 100], ['resnet50', 140]] as const) {
    const im = await loadFeatureModel(tf, model, { weights: 'random', seed: 1 });
    const exported = exportOnnx(im.model);
    im.dispose();
    const input = onnx.ModelProto.decode(exported).graph!.input![0]!.name!;
    const ext = externalized(exported, `${model}_extract.bin`);
    writeFileSync(join(dir, `${model}_extract.onnx`), ext.bytes);
    graphs.push({ name: `${model} extraction`, kind: 'extract', file: `${model}_extract.onnx`, batch: extractBatch, ...(ext.external ? { external: ext.external } : {}), inputs: [{ name: input, type: 'float32', shape: [extractBatch, 224, 224, 3], fill: 'random' }], runs: 10 });
    // The step as training runs it on a GPU provider: the portable lowering, one step per run.
    const { graph, boundaryShapes } = await tailGraph(tf, model, freeze, { batch: stepBatch, lowering: 'gather' });
    const step = externalized(graph.bytes, `${model}_step.bin`);
    writeFileSync(join(dir, `${model}_step.onnx`), step.bytes);
    const inputs: InputSpec[] = [
      ...graph.boundary.map((name, i): InputSpec => ({ name, type: 'float32', shape: [stepBatch, ...boundaryShapes[i]!], fill: 'relu' })),
      ...graph.trainable.flatMap((s): InputSpec[] => [{ name: s.input, type: 'float32', shape: s.shape, fill: 'random' }, ...s.slots.map((slot): InputSpec => ({ name: slot.input, type: 'float32', shape: s.shape, fill: 'zeros' }))]),
      ...graph.state.map((s): InputSpec => ({ name: s.input, type: 'float32', shape: s.shape, fill: 'ones' })),
      { name: graph.inputs.labels, type: 'int64', shape: [stepBatch], classes: 5 },
      { name: graph.inputs.sampleWeights, type: 'float32', shape: [stepBatch], fill: 'ones' },
      { name: graph.inputs.lr, type: 'float32', shape: [], fill: 1e-4 },
      { name: graph.inputs.step, type: 'float32', shape: [], fill: 1 },
    ];
    graphs.push({
      name: `${model} --freeze ${freeze} train step`, kind: 'step', file: `${model}_step.onnx`, batch: stepBatch, ...(step.external ? { external: step.external } : {}), inputs,
      carried: graph.trainable.flatMap((s) => [[s.input, s.output] as [string, string], ...s.slots.map((slot) => [slot.input, slot.output] as [string, string])]),
      check: [graph.outputs.loss], runs: 12,
    });
  }
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify({ graphs }, null, 2)}\n`);
}

export interface GpuCheckResult {
  ort: unknown;
  node: string;
  date: string;
  cpu: string;
  cores: number;
  results: ({ graph: string; kind: string; batch: number; provider: string } & ({ ms: number; runs: number; firstMs: number; imgPerS: number } | { error: string }))[];
  torch?: { device: string; torch: string; extract: Record<string, number>; step: Record<string, number> } | { error: string };
}

/** Runs the prepared check with this repository's onnxruntime-node and Node.js (PyTorch with `python` where given). */
export function runGpuCheck(dir: string, options: { providers?: string; python?: string; device?: string } = {}): GpuCheckResult {
  const torch = options.python ? ['--torch', options.python, '--device', options.device ?? 'cuda'] : [];
  const r = spawnSync(process.execPath, [join(ROOT, 'bench', 'gpu-check.mjs'), dir, '--providers', options.providers ?? 'cpu,webgpu,cuda', ...torch], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`the GPU check failed (exit ${String(r.status)})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as GpuCheckResult;
}

/**
 * Everything a lent GPU machine needs for the check, in `dir` (inside the repository, ignored by git, named in the
 * run's carry): the graphs, this Node.js binary and onnxruntime-node's files (compressed with xz), the Vulkan loader
 * packages Dawn needs there, and bench/gpu-run.sh runs it all.
 */
export async function bundleGpuCheck(tf: Tf, dir: string): Promise<void> {
  await prepareGpuCheck(tf, join(dir, 'graphs'));
  const require = createRequire(import.meta.url);
  const ortRoot = dirname(require.resolve('onnxruntime-node/package.json'));
  // onnxruntime-common exports no package.json: its root is the folder above its entry that holds one.
  let commonRoot = dirname(require.resolve('onnxruntime-common', { paths: [ortRoot] }));
  while (!existsSync(join(commonRoot, 'package.json'))) commonRoot = dirname(commonRoot);
  const ortDir = join(dir, 'node_modules', 'onnxruntime-node');
  mkdirSync(join(ortDir, 'bin', 'napi-v6', 'linux', 'x64'), { recursive: true });
  cpSync(join(ortRoot, 'dist'), join(ortDir, 'dist'), { recursive: true });
  copyFileSync(join(ortRoot, 'package.json'), join(ortDir, 'package.json'));
  const native = join(ortRoot, 'bin', 'napi-v6', 'linux', 'x64');
  for (const f of readdirSync(native)) copyFileSync(join(native, f), join(ortDir, 'bin', 'napi-v6', 'linux', 'x64', f));
  cpSync(commonRoot, join(dir, 'node_modules', 'onnxruntime-common'), { recursive: true });
  copyFileSync(process.execPath, join(dir, 'node'));
  // The two large binaries travel compressed (the run's files are limited to 64 MiB); gpu-run.sh unpacks them.
  execFileSync('xz', ['-6', '-f', join(dir, 'node'), join(ortDir, 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime.so.1')]);
  mkdirSync(join(dir, 'debs'), { recursive: true });
  const apt = ['-oAPT::Architecture=amd64', '-oAPT::Architectures=amd64', `-oDir::State::Lists=${join(dir, '.apt-lists')}`];
  mkdirSync(join(dir, '.apt-lists', 'partial'), { recursive: true });
  execFileSync('apt-get', [...apt, 'update'], { stdio: 'ignore' });
  execFileSync('apt-get', [...apt, 'download', 'libvulkan1', 'libegl1', 'libglvnd0', 'libopengl0', 'libgl1', 'libglx0', 'libgles2'], { cwd: join(dir, 'debs'), stdio: 'ignore' });
  execFileSync('rm', ['-rf', join(dir, '.apt-lists')]);
}

const fmt = (v: number, d = 1) => v.toFixed(d);

/** BENCHMARKS.md's section for a check's results. */
export function gpuSection(result: GpuCheckResult): { title: string; lines: string[] } {
  const providers = [...new Set(result.results.map((r) => r.provider))];
  const graphs = [...new Set(result.results.map((r) => r.graph))];
  const cell = (graph: string, provider: string) => {
    const r = result.results.find((x) => x.graph === graph && x.provider === provider);
    if (!r) return '-';
    if ('error' in r) return `not usable: ${r.error}`;
    return r.kind === 'extract' ? `${fmt(r.imgPerS)} img/s` : `${fmt(r.ms)} ms/step`;
  };
  const torch = result.torch && !('error' in result.torch) ? result.torch : null;
  const torchCell = (graph: string) => {
    if (!torch) return result.torch && 'error' in result.torch ? `not measured: ${result.torch.error}` : 'not measured: no PyTorch with CUDA here';
    const model = graph.split(' ')[0]!;
    return graph.includes('extraction') ? `${fmt(torch.extract[model] ?? NaN)} img/s` : `${fmt(torch.step[model] ?? NaN)} ms/step`;
  };
  return {
    title: 'GPU check',
    lines: [
      `ONNX Runtime runs tl's graphs with random weights: the pooled-feature extraction of each model at batch 64, and the cached train step (batch 16, Adam, the portable lowering that GPU providers get, one step per run; on WebGPU the weights and slots stay on the device between steps) on each execution provider that opens. PyTorch${torch ? ` ${torch.torch} on ${torch.device}` : ''} runs the same work (bench/torch_reference.py extract and tailstep). Medians of up to 12 timed runs after two warm-up runs.`,
      '',
      `| graph | ${providers.map((p) => `ONNX Runtime ${p}`).join(' | ')} | PyTorch |`,
      `| --- | ${providers.map(() => '---').join(' | ')} | --- |`,
      ...graphs.map((g) => `| ${g} | ${providers.map((p) => cell(g, p)).join(' | ')} | ${torchCell(g)} |`),
    ],
  };
}

export function readGpuResult(file: string): GpuCheckResult {
  return JSON.parse(readFileSync(file, 'utf8')) as GpuCheckResult;
}
