import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { leep, logme, transrate, type Features } from '../../src/metrics/transferability.js';
import { randomArray } from '../helpers/tensors.js';

const REFERENCE = fileURLToPath(new URL('../fixtures/rank_reference.py', import.meta.url));
const numpy = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

/** Features with class structure: each class a mean vector plus noise (seeded). */
function clustered(n: number, d: number, classes: number, spread: number, seed: number): { f: Features; labels: Int32Array } {
  const means = randomArray(classes * d, seed);
  const noise = randomArray(n * d, seed + 1);
  const labels = Int32Array.from({ length: n }, (_, i) => i % classes);
  const data = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) data[i * d + a] = means[labels[i]! * d + a]! + spread * noise[i * d + a]!;
  return { f: { data, n, d }, labels };
}

/** A source classifier's softmax over `z` classes that leans towards target class (label mod z). */
function sourceProbs(labels: Int32Array, z: number, seed: number): Features {
  const noise = randomArray(labels.length * z, seed);
  const data = new Float32Array(labels.length * z);
  labels.forEach((label, i) => {
    const logits = Array.from({ length: z }, (_, s) => noise[i * z + s]! * 2 + (s === label % z ? 1.5 : 0));
    const max = Math.max(...logits);
    const exp = logits.map((v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    exp.forEach((v, s) => (data[i * z + s] = v / sum));
  });
  return { data, n: labels.length, d: z };
}

function shuffled(labels: Int32Array, seed: number): Int32Array {
  const keys = randomArray(labels.length, seed);
  return Int32Array.from([...labels.keys()].sort((a, b) => keys[a]! - keys[b]!).map((i) => labels[i]!));
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('transferability scores', () => {
  // More samples than dimensions, and fewer: tl decomposes whichever Gram matrix is smaller.
  for (const [n, d] of [[90, 24], [30, 70]] as const) {
    it.runIf(numpy)(`equal an independent numpy implementation to 1e-6 (n ${n}, d ${d})`, () => {
      const { f, labels } = clustered(n, d, 3, 1.5, n + d);
      const source = sourceProbs(labels, 5, 9);
      const ours = { logme: logme(f, labels), transrate: transrate(f, labels), leep: leep(source, labels) };
      const py = spawnSync('/usr/bin/python3', [REFERENCE], { input: JSON.stringify({ features: Array.from(f.data), n, d, labels: Array.from(labels), source: Array.from(source.data) }), encoding: 'utf8' });
      expect(py.status, py.stderr).toBe(0);
      const reference = JSON.parse(py.stdout) as typeof ours;
      for (const key of ['logme', 'transrate', 'leep'] as const) expect(relative(ours[key], reference[key]), `${key}: ${ours[key]} vs numpy ${reference[key]}`).toBeLessThan(1e-6);
    });
  }

  it.skipIf(numpy)('numpy comparison skipped: /usr/bin/python3 cannot import numpy (apt-get install python3-numpy)', () => {});

  it('LogME does not change when the features are scaled', () => {
    const { f, labels } = clustered(60, 16, 3, 2, 4);
    const base = logme(f, labels);
    for (const c of [0.001, 0.1, 10, 1000]) {
      const scaled = { ...f, data: f.data.map((v) => v * c) };
      expect(relative(logme(scaled, labels), base), `x${c}`).toBeLessThan(1e-6);
    }
  });

  it('every score is higher for separable classes than for the same features with shuffled labels', () => {
    for (const [n, d] of [[90, 24], [30, 70]] as const) {
      const { f, labels } = clustered(n, d, 3, 1, 11);
      const random = shuffled(labels, 5);
      const source = sourceProbs(labels, 4, 3);
      expect(logme(f, labels)).toBeGreaterThan(logme(f, random));
      expect(transrate(f, labels)).toBeGreaterThan(transrate(f, random));
      expect(leep(source, labels)).toBeGreaterThan(leep(source, random));
    }
  });

  it('tighter classes score higher (LogME and TransRate)', () => {
    const tight = clustered(90, 24, 3, 0.5, 2);
    const loose = clustered(90, 24, 3, 3, 2);
    expect(logme(tight.f, tight.labels)).toBeGreaterThan(logme(loose.f, loose.labels));
    expect(transrate(tight.f, tight.labels)).toBeGreaterThan(transrate(loose.f, loose.labels));
  });

  it('refuses input it cannot score, saying why', () => {
    const { f, labels } = clustered(10, 4, 2, 1, 1);
    expect(() => logme(f, labels.subarray(0, 9))).toThrow('LogME: 9 labels for 10 feature rows');
    expect(() => transrate(f, new Int32Array(10))).toThrow('TransRate needs at least two classes');
    const broken = { ...f, data: f.data.map((v, i) => (i === 3 ? NaN : v)) };
    expect(() => logme(broken, labels)).toThrow('LogME: the features are not all finite');
  });
});
