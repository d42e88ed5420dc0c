/**
 * Plain-TypeScript float64 references of the per-token transformer kernels (norms, activations,
 * embedding gathers, softmax losses) and their activation gradients, plus central finite differences.
 * Tests compare the GPU kernels against these; they are written for clarity, not speed.
 *
 * Layout: activations are row-major `[rows, d]` flat arrays; logits are `[rows, V]`.
 * @module
 */

/** Flat numeric input (any typed array or number[]). */
export type Values = ArrayLike<number>;

/** √(2/π), the constant of `gelu_new`. */
export const GELU_K: number = Math.sqrt(2 / Math.PI);
/** The cubic coefficient of `gelu_new`. */
export const GELU_C = 0.044715;

function rowMean(x: Values, base: number, d: number, f: (v: number, j: number) => number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += f(x[base + j], j);
  return s / d;
}

/** LayerNorm over the last dim: `(x − μ)/√(var + eps)·w + b` with the biased variance (as PyTorch). */
export function layerNormRef(
  x: Values,
  w: Values,
  b: Values | null,
  rows: number,
  d: number,
  eps: number,
): Float64Array {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const mu = rowMean(x, o, d, (v) => v);
    const vr = rowMean(x, o, d, (v) => (v - mu) ** 2);
    const rstd = 1 / Math.sqrt(vr + eps);
    for (let j = 0; j < d; j++) y[o + j] = (x[o + j] - mu) * rstd * w[j] + (b ? b[j] : 0);
  }
  return y;
}

/** Gradient of LayerNorm w.r.t. its input: `rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·w`. */
export function layerNormBackwardRef(
  x: Values,
  w: Values,
  dy: Values,
  rows: number,
  d: number,
  eps: number,
): Float64Array {
  const dx = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const mu = rowMean(x, o, d, (v) => v);
    const vr = rowMean(x, o, d, (v) => (v - mu) ** 2);
    const rstd = 1 / Math.sqrt(vr + eps);
    let mg = 0, mgx = 0;
    for (let j = 0; j < d; j++) {
      const g = dy[o + j] * w[j];
      mg += g;
      mgx += g * (x[o + j] - mu) * rstd;
    }
    mg /= d;
    mgx /= d;
    for (let j = 0; j < d; j++) {
      const xh = (x[o + j] - mu) * rstd;
      dx[o + j] = rstd * (dy[o + j] * w[j] - mg - xh * mgx);
    }
  }
  return dx;
}

/** RMSNorm (Llama): `w · x · rsqrt(mean(x²) + eps)`. */
export function rmsNormRef(x: Values, w: Values, rows: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const inv = 1 / Math.sqrt(rowMean(x, o, d, (v) => v * v) + eps);
    for (let j = 0; j < d; j++) y[o + j] = w[j] * x[o + j] * inv;
  }
  return y;
}

/** Gradient of RMSNorm w.r.t. its input: `r·g − x·r³·mean(g·x)` with `g = dy·w`, `r = rsqrt(mean(x²)+eps)`. */
export function rmsNormBackwardRef(
  x: Values,
  w: Values,
  dy: Values,
  rows: number,
  d: number,
  eps: number,
): Float64Array {
  const dx = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const inv = 1 / Math.sqrt(rowMean(x, o, d, (v) => v * v) + eps);
    const mgx = rowMean(x, o, d, (v, j) => dy[o + j] * w[j] * v);
    for (let j = 0; j < d; j++) dx[o + j] = inv * dy[o + j] * w[j] - x[o + j] * inv ** 3 * mgx;
  }
  return dx;
}

/** `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, elementwise. */
export function geluNewRef(x: Values): Float64Array {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(GELU_K * (v + GELU_C * v ** 3))));
}

/** Gradient of `gelu_new`: `dy · (0.5(1+t) + 0.5·x·(1−t²)·k·(1 + 3c·x²))`, `t = tanh(k(x + c·x³))`. */
export function geluNewBackwardRef(x: Values, dy: Values): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const t = Math.tanh(GELU_K * (v + GELU_C * v ** 3));
    return dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * v * v));
  });
}

function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/** The gated MLP hidden of Llama/Mistral: `silu(gate) · up`, `silu(g) = g·σ(g)`. */
export function siluMulRef(gate: Values, up: Values): Float64Array {
  return Float64Array.from(gate, (g, i) => g * sigmoid(g) * up[i]);
}

/** Gradients of `silu(gate)·up`: `dGate = dh·up·σ(g)(1 + g(1−σ(g)))`, `dUp = dh·silu(g)`. */
export function siluMulBackwardRef(
  gate: Values,
  up: Values,
  dh: Values,
): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = new Float64Array(gate.length), dUp = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i], s = sigmoid(g);
    dGate[i] = dh[i] * up[i] * s * (1 + g * (1 - s));
    dUp[i] = dh[i] * g * s;
  }
  return { dGate, dUp };
}

/** Row gather: `out[i] = table[ids[i]]` for a `[V, d]` table. */
export function embeddingRef(table: Values, d: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * d);
  for (let i = 0; i < ids.length; i++) {
    for (let j = 0; j < d; j++) out[i * d + j] = table[ids[i] * d + j];
  }
  return out;
}

/** Log-softmax of the listed rows of `[rows, V]` logits (max-subtracted), as a `[n, V]` array. */
export function logSoftmaxRef(logits: Values, V: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * V);
  for (let i = 0; i < rows.length; i++) {
    const o = rows[i] * V;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[o + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[o + v] - m);
    const lse = m + Math.log(s);
    for (let v = 0; v < V; v++) out[i * V + v] = logits[o + v] - lse;
  }
  return out;
}

/**
 * Per-row negative log-likelihood of `targets` (−1 = ignored: nll 0, zero gradient row) and the
 * gradient of `Σ_r w_r·nll_r` w.r.t. the logits: `w_r·(softmax_r − onehot(target_r))`.
 */
export function tokenNllRef(
  logits: Values,
  V: number,
  targets: ArrayLike<number>,
  weights?: Values,
): { nll: Float64Array; dLogits: Float64Array } {
  const rows = targets.length;
  const nll = new Float64Array(rows), dLogits = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t < 0) continue;
    const lp = logSoftmaxRef(logits, V, [r]);
    nll[r] = -lp[t];
    const wr = weights ? weights[r] : 1;
    for (let v = 0; v < V; v++) dLogits[r * V + v] = wr * (Math.exp(lp[v]) - (v === t ? 1 : 0));
  }
  return { nll, dLogits };
}

/**
 * `KL(P_cur ‖ P_init) = Σ_v exp(c_v)(c_v − i_v)` with `c = log_softmax(logits[row])` (torch's
 * `F.kl_div(init, cur, log_target=True)`), and `weight ·` its gradient w.r.t. the logits:
 * `p_v·(c_v − i_v − KL)` on that row, zero elsewhere.
 */
export function klDivergenceRef(
  logits: Values,
  V: number,
  row: number,
  initLogProbs: Values,
  weight = 1,
): { kl: number; dLogits: Float64Array } {
  const rows = logits.length / V;
  const c = logSoftmaxRef(logits, V, [row]);
  let kl = 0;
  for (let v = 0; v < V; v++) kl += Math.exp(c[v]) * (c[v] - initLogProbs[v]);
  const dLogits = new Float64Array(rows * V);
  for (let v = 0; v < V; v++) {
    dLogits[row * V + v] = weight * Math.exp(c[v]) * (c[v] - initLogProbs[v] - kl);
  }
  return { kl, dLogits };
}

/**
 * Central finite-difference gradient of a scalar function: `(f(x + h·e_i) − f(x − h·e_i)) / 2h` for
 * every coordinate (or only those in `indices`; the others stay 0). Truncation error is O(h²·f‴).
 */
export function centralDiff(
  f: (x: Float64Array) => number,
  x: Values,
  h: number,
  indices?: ArrayLike<number>,
): Float64Array {
  const xs = Float64Array.from(x);
  const g = new Float64Array(xs.length);
  const n = indices ? indices.length : xs.length;
  for (let k = 0; k < n; k++) {
    const i = indices ? indices[k] : k;
    const v = xs[i];
    xs[i] = v + h;
    const fp = f(xs);
    xs[i] = v - h;
    const fm = f(xs);
    xs[i] = v;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Central finite-difference directional derivative `(f(x + h·u) − f(x − h·u)) / 2h`. */
export function directionalDiff(f: (x: Float64Array) => number, x: Values, u: Values, h: number): number {
  const xp = Float64Array.from(x, (v, i) => v + h * u[i]);
  const xm = Float64Array.from(x, (v, i) => v - h * u[i]);
  return (f(xp) - f(xm)) / (2 * h);
}

/** `Σ_i a_i·b_i` in float64. */
export function dot(a: Values, b: Values): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
