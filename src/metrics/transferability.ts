// Transferability scores: how well a pretrained model's features suit a labelled dataset, from one forward pass.
//   LogME (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model on the features, per sample,
//     averaged over one-vs-rest targets; evidence maximised over the prior and noise precisions by fixed-point
//     iteration (the paper's Algorithm 2), run to convergence.
//   TransRate (Huang et al., ICML 2022): the coding rate of the centred features minus the mean coding rate of each
//     class's features (the paper's code, eps 1e-4).
//   LEEP (Nguyen et al., ICML 2020): the log expected empirical prediction of the source classifier's outputs.
// Features are row-major Float32Arrays of n rows by d columns; labels are class indices.
import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from 'ml-matrix';

export interface Features {
  data: Float32Array;
  n: number;
  d: number;
}

/** X Xᵀ (n x n) or Xᵀ X (d x d), whichever is smaller, in float64. */
function gram(f: Features, rows: boolean): Matrix {
  const { data, n, d } = f;
  if (rows) {
    const g = new Matrix(n, n);
    for (let i = 0; i < n; i++) {
      for (let j = i; j < n; j++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += data[i * d + k]! * data[j * d + k]!;
        g.set(i, j, s);
        g.set(j, i, s);
      }
    }
    return g;
  }
  const sums = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) row[k] = data[i * d + k]!;
    for (let a = 0; a < d; a++) {
      const ra = row[a]!;
      if (ra === 0) continue;
      for (let b = a; b < d; b++) sums[a * d + b] = sums[a * d + b]! + ra * row[b]!;
    }
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) sums[a * d + b] = sums[b * d + a]!;
  return new Matrix(Array.from({ length: d }, (_, a) => Array.from(sums.subarray(a * d, (a + 1) * d))));
}

/** The checks every score makes on its input. */
function check(f: Features, labels: Int32Array, what: string): number {
  if (f.data.length !== f.n * f.d) throw new Error(`${what}: ${f.data.length} values for ${f.n} x ${f.d} features`);
  if (labels.length !== f.n) throw new Error(`${what}: ${labels.length} labels for ${f.n} feature rows`);
  if (f.n < 2) throw new Error(`${what} needs at least two samples`);
  let classes = 0;
  for (const l of labels) classes = Math.max(classes, l + 1);
  if (classes < 2) throw new Error(`${what} needs at least two classes`);
  for (const v of f.data) if (!Number.isFinite(v)) throw new Error(`${what}: the features are not all finite`);
  return classes;
}

/**
 * LogME: the mean over classes of the per-sample log evidence of a one-vs-rest Bayesian linear regression
 * y = w·f + noise (prior w ~ N(0, 1/alpha), noise ~ N(0, 1/beta)), alpha and beta at their fixed point.
 * Higher is better; values are comparable between models on the same data. Invariant to scaling the features.
 */
export function logme(f: Features, labels: Int32Array): number {
  const classes = check(f, labels, 'LogME');
  const { n, d } = f;
  // Eigen-decomposition of the smaller Gram matrix gives sigma (squared singular values of F, k = min(n, d) of
  // them) and each target's projections x = Uᵀy on F's left singular vectors.
  const rows = n <= d;
  const eig = new EigenvalueDecomposition(gram(f, rows), { assumeSymmetric: true });
  const k = rows ? n : d;
  // The evidence is exactly invariant to scaling F; the 1e-5 guard below is not, so F is taken at unit mean squared
  // row norm (sigma / (sum sigma / n); the projections x do not change with scale).
  const raw = eig.realEigenvalues.map((v) => Math.max(v, 0));
  const meanSquare = raw.reduce((a, v) => a + v, 0) / n;
  if (!(meanSquare > 0)) throw new Error('LogME: the features are all zero');
  const sigma = raw.map((v) => v / meanSquare);
  const vectors = eig.eigenvectorMatrix;
  const evidences: number[] = [];
  for (let c = 0; c < classes; c++) {
    const y = Float64Array.from(labels, (l) => (l === c ? 1 : 0));
    const x = new Float64Array(k);
    if (rows) {
      for (let j = 0; j < k; j++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += vectors.get(i, j) * y[i]!;
        x[j] = s;
      }
    } else {
      // U = F V / sqrt(sigma): x_j = (Fᵀy · v_j) / sqrt(sigma_j), zero where sigma_j is zero.
      const fty = new Float64Array(d);
      for (let i = 0; i < n; i++) if (y[i] !== 0) for (let a = 0; a < d; a++) fty[a] = fty[a]! + f.data[i * d + a]!;
      for (let j = 0; j < k; j++) {
        if (raw[j]! <= 0) continue;
        let s = 0;
        for (let a = 0; a < d; a++) s += fty[a]! * vectors.get(a, j);
        x[j] = s / Math.sqrt(raw[j]!);
      }
    }
    const x2 = x.map((v) => v * v);
    const yy = y.reduce((a, v) => a + v * v, 0);
    const residualOutside = Math.max(0, yy - x2.reduce((a, v) => a + v, 0));
    let alpha = 1;
    let beta = 1;
    let m2 = 0;
    let res2 = 0;
    for (let iteration = 0; iteration < 1000; iteration++) {
      const t = alpha / beta;
      let gamma = 0;
      m2 = 0;
      res2 = residualOutside;
      for (let j = 0; j < k; j++) {
        const s = sigma[j]!;
        gamma += s / (s + t);
        m2 += (s * x2[j]!) / ((t + s) * (t + s));
        res2 += x2[j]! / ((1 + s / t) * (1 + s / t));
      }
      // The paper's code keeps both denominators away from zero (a perfect fit when there are fewer samples than
      // dimensions drives the residual to 0).
      alpha = gamma / (m2 + EPSILON);
      beta = (n - gamma) / (res2 + EPSILON);
      if (Math.abs(alpha / beta - t) / t < 1e-12) break;
    }
    // log evidence of the paper's eq. (2); the d - k zero eigenvalues of FᵀF contribute log(alpha) each.
    let logDet = (d - k) * Math.log(alpha);
    for (let j = 0; j < k; j++) logDet += Math.log(alpha + beta * sigma[j]!);
    const evidence = (d / 2) * Math.log(alpha) + (n / 2) * Math.log(beta) - 0.5 * logDet - (beta / 2) * res2 - (alpha / 2) * m2 - (n / 2) * Math.log(2 * Math.PI);
    evidences.push(evidence / n);
  }
  const score = evidences.reduce((a, v) => a + v, 0) / classes;
  if (!Number.isFinite(score)) throw new Error(`LogME did not converge on these features (${score})`);
  return score;
}

/** The paper's guard on the evidence iteration's denominators. */
const EPSILON = 1e-5;

/** log det(I + c ZᵀZ) = log det(I + c Z Zᵀ), through the smaller of the two, by Cholesky. */
function logDetIdentityPlus(z: Features, c: number): number {
  const g = gram(z, z.n <= z.d);
  for (let i = 0; i < g.rows; i++) for (let j = 0; j < g.columns; j++) g.set(i, j, g.get(i, j) * c + (i === j ? 1 : 0));
  const chol = new CholeskyDecomposition(g);
  const l = chol.lowerTriangularMatrix;
  let sum = 0;
  for (let i = 0; i < l.rows; i++) sum += Math.log(l.get(i, i));
  return 2 * sum;
}

function codingRate(z: Features, eps: number): number {
  return 0.5 * logDetIdentityPlus(z, 1 / (z.n * eps));
}

/** TransRate: R(Z) - mean over classes of R(Z_c), with Z the centred features. Higher is better; depends on scale. */
export function transrate(f: Features, labels: Int32Array, eps = 1e-4): number {
  const classes = check(f, labels, 'TransRate');
  const { n, d } = f;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) mean[a] = mean[a]! + f.data[i * d + a]!;
  for (let a = 0; a < d; a++) mean[a] = mean[a]! / n;
  const centred = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) centred[i * d + a] = f.data[i * d + a]! - mean[a]!;
  const whole = codingRate({ data: centred, n, d }, eps);
  let perClass = 0;
  for (let c = 0; c < classes; c++) {
    const members = [...labels.keys()].filter((i) => labels[i] === c);
    if (members.length === 0) continue;
    const part = new Float32Array(members.length * d);
    members.forEach((i, r) => part.set(centred.subarray(i * d, (i + 1) * d), r * d));
    perClass += codingRate({ data: part, n: members.length, d }, eps);
  }
  return whole - perClass / classes;
}

/**
 * LEEP: mean over samples of log sum_z P(y_i | z) theta_z(x_i), where theta is the source classifier's softmax (n rows
 * of z columns) and P(y | z) the empirical conditional of target labels given source classes. At most 0; higher is
 * better.
 */
export function leep(source: Features, labels: Int32Array): number {
  const classes = check(source, labels, 'LEEP');
  const { n, d: z } = source;
  const joint = new Float64Array(classes * z);
  for (let i = 0; i < n; i++) for (let s = 0; s < z; s++) joint[labels[i]! * z + s] = joint[labels[i]! * z + s]! + source.data[i * z + s]! / n;
  const marginal = new Float64Array(z);
  for (let y = 0; y < classes; y++) for (let s = 0; s < z; s++) marginal[s] = marginal[s]! + joint[y * z + s]!;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let p = 0;
    for (let s = 0; s < z; s++) if (marginal[s]! > 0) p += (joint[labels[i]! * z + s]! / marginal[s]!) * source.data[i * z + s]!;
    total += Math.log(p);
  }
  return total / n;
}
