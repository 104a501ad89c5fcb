// `tl export --demo`: an index.html beside the exported model that classifies a dropped or chosen image in the
// browser with the model's own preprocessing (from its tl.json card), with no network: the runtime's scripts are
// copied beside it (TensorFlow.js from tl's own dependency; ONNX Runtime Web from an installed onnxruntime-web).
// Serve the folder over HTTP (browsers do not let a file:// page read the model), e.g. `npx http-server DIR`.
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import type { DeployCard } from '../registry/metadata.js';
import { writeFileAtomic } from '../util/atomic.js';

/** The first line of every demo page tl writes: an index.html without it is the user's own and is not replaced. */
const MARK = '<!-- tl export --demo -->';

/** ONNX Runtime Web's files the page needs (the wasm-only build, one thread: no cross-origin isolation needed). */
const ORT_FILES = ['ort.wasm.min.js', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON safe inside a <script> element. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

function resolvePackageFile(pkg: string, file: string, hint: string): string {
  try {
    // Both packages' main entry lies in their dist/ folder, beside the browser builds.
    return join(dirname(createRequire(import.meta.url).resolve(pkg)), file);
  } catch {
    throw new UsageError(`--demo for this format needs ${pkg}, which is not installed.`, { suggestion: hint });
  }
}

/** The page's script: preprocessing as tl's (src/data/preprocess.ts) and fitting as its resize modes (center-crop, squash, pad). */
const PAGE_SCRIPT = String.raw`
const S = CARD.input.size;
const status = (t) => (document.getElementById('status').textContent = t);
function fit(img) {
  const w = img.naturalWidth, h = img.naturalHeight;
  const canvas = document.createElement('canvas');
  canvas.width = S; canvas.height = S;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingQuality = 'high';
  ctx.fillStyle = '#000'; ctx.fillRect(0, 0, S, S);
  let src = [0, 0, w, h], dst = [0, 0, S, S];
  if (CARD.resize === 'pad') {
    const k = Math.min(S / w, S / h), dw = Math.round(w * k), dh = Math.round(h * k);
    dst = [Math.floor((S - dw) / 2), Math.floor((S - dh) / 2), dw, dh];
  } else if (CARD.resize !== 'squash') {
    const k = Math.max(S / w, S / h), sw = S / k, sh = S / k;
    src = [(w - sw) / 2, (h - sh) / 2, sw, sh];
  }
  // Transparent pixels are flattened on white, as tl's decoder does.
  ctx.fillStyle = '#fff'; ctx.fillRect(...dst);
  ctx.drawImage(img, ...src, ...dst);
  const rgba = ctx.getImageData(0, 0, S, S).data;
  const f = Math.fround, x = new Float32Array(S * S * 3);
  const caffe = [103.939, 116.779, 123.68].map(f), mean = [0.485, 0.456, 0.406].map(f), std = [0.229, 0.224, 0.225].map(f);
  for (let p = 0; p < S * S; p++) for (let c = 0; c < 3; c++) {
    const v = rgba[p * 4 + c];
    switch (CARD.preprocess.mode) {
      case 'caffe': x[p * 3 + c] = f(rgba[p * 4 + 2 - c] - caffe[c]); break;
      case 'tf': x[p * 3 + c] = f(f(v / 127.5) - 1); break;
      case 'torch': x[p * 3 + c] = f(f(f(v / 255) - mean[c]) / std[c]); break;
      case 'raw01': x[p * 3 + c] = f(v / 255); break;
      default: x[p * 3 + c] = v;
    }
  }
  return x;
}
async function load() {
  if (KIND === 'onnx') {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = new URL('./', location.href).href;
    const session = await ort.InferenceSession.create(MODEL, { executionProviders: ['wasm'] });
    return async (x) => (await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [1, S, S, 3]) }))[session.outputNames[0]].data;
  }
  const wanted = new URLSearchParams(location.search).get('backend');
  if (!(wanted && (await tf.setBackend(wanted))) && !(await tf.setBackend('webgl'))) await tf.setBackend('cpu');
  const model = await tf.loadLayersModel(MODEL);
  return async (x) => { const input = tf.tensor4d(x, [1, S, S, 3]); const y = model.predict(input); const out = await y.data(); input.dispose(); y.dispose(); return out; };
}
const ready = load().then((run) => { status('ready: drop an image or choose one'); return run; }, (e) => { status('could not load the model: ' + e.message); throw e; });
async function classifyImage(img) {
  const run = await ready;
  const probs = await run(fit(img));
  return Array.from(probs, (p, i) => ({ class: CARD.labels[i], probability: p })).sort((a, b) => b.probability - a.probability);
}
function imageFrom(url) {
  return new Promise((resolve, reject) => { const img = new Image(); img.onload = () => resolve(img); img.onerror = () => reject(new Error('not an image the browser can read: ' + url)); img.src = url; });
}
async function show(url) {
  const img = await imageFrom(url);
  document.getElementById('preview').src = url;
  const top = (await classifyImage(img)).slice(0, 5);
  document.getElementById('result').innerHTML = '';
  for (const t of top) { const row = document.getElementById('result').insertRow(); row.insertCell().textContent = t.class; row.insertCell().textContent = (t.probability * 100).toFixed(1) + '%'; }
}
const pick = (file) => file && show(URL.createObjectURL(file)).catch((e) => status(e.message));
document.getElementById('file').addEventListener('change', (e) => pick(e.target.files[0]));
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => { e.preventDefault(); pick(e.dataTransfer.files[0]); });
window.tlDemo = { ready: ready.then(() => true), classify: async (url) => classifyImage(await imageFrom(url)) };
`;

function page(card: DeployCard, kind: 'onnx' | 'tfjs', model: string, scripts: string[]): string {
  return `${MARK}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(card.model)}</title>
<style>body{font:16px system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}#preview{max-width:100%;max-height:20rem;display:block;margin:1rem 0}td{padding:.2rem 1rem .2rem 0}small{color:#555}</style>
</head>
<body>
<h1>${escapeHtml(card.model)}</h1>
<p>Drop an image anywhere on this page, or <input type="file" id="file" accept="image/*"></p>
<p id="status">loading the model…</p>
<img id="preview" alt="">
<table id="result"></table>
<p><small>${card.labels.length} labels; input ${card.input.size}x${card.input.size} RGB (${escapeHtml(card.resize ?? 'center-crop')}), preprocessing ${escapeHtml(card.preprocess.mode)}: ${escapeHtml(card.preprocess.formula)}. Runs in this browser; nothing is sent anywhere.</small></p>
${scripts.map((s) => `<script src="${escapeHtml(s)}"></script>`).join('\n')}
<script>
const CARD = ${scriptJson(card)};
const KIND = ${scriptJson(kind)};
const MODEL = ${scriptJson(model)};
${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/** The page's path for a model at `modelPath`; refused (before anything is written) when an index.html tl did not write is there. */
export async function demoPage(kind: 'onnx' | 'tfjs', modelPath: string): Promise<string> {
  const index = join(kind === 'tfjs' ? modelPath : dirname(modelPath), 'index.html');
  const existing = await readFile(index, 'utf8').catch(() => null);
  if (existing !== null && !existing.startsWith(MARK)) throw new UsageError(`${index} exists and is not a page tl wrote; --demo does not replace it.`, { suggestion: 'Export into a folder of its own.' });
  return index;
}

/** Writes index.html (and the runtime's scripts) beside the model (model.json's folder, or the .onnx file's). */
export async function writeDemo(kind: 'onnx' | 'tfjs', modelPath: string, card: DeployCard): Promise<string> {
  const index = await demoPage(kind, modelPath);
  const dir = dirname(index);
  const model = kind === 'tfjs' ? 'model.json' : basename(modelPath);
  const files = kind === 'tfjs'
    ? [resolvePackageFile('@tensorflow/tfjs', 'tf.min.js', 'Reinstall tl.')]
    : ORT_FILES.map((f) => resolvePackageFile('onnxruntime-web', f, 'Install it beside tl (npm install onnxruntime-web@1.30.0; with -g where tl was installed with -g), or export --format tfjs --demo, whose runtime tl carries.'));
  for (const file of files) {
    if (!(await stat(file).catch(() => null))) throw new UsageError(`--demo: ${file} is missing from its package.`, { suggestion: 'Reinstall the package.' });
    await writeFileAtomic(join(dir, basename(file)), await readFile(file));
  }
  await writeFileAtomic(index, page(card, kind, model, [basename(files[0]!)]));
  return index;
}
