/**
 * Plain-TypeScript f64 references for the rank-one update, covariance accumulation and SPD solve
 * kernel families (lib/ops/outer.ts, covariance.ts, cholesky.ts). They are slow and exact-ish (f64
 * arithmetic) and exist for tests and benchmarks; nothing on the edit path uses them.
 *
 * All matrices are dense, row-major `Float64Array`s (or any `ArrayLike<number>` as input).
 * @module
 */

/** Row-major layout of a matrix given to {@link outerReference}; see {@link OuterLayout}. */
export type OuterLayout = "out_in" | "in_out";

/**
 * W + α·(rank-one) in f64, with ROME's naming: `u` is the key-side vector (length d_in), `v` the
 * value-side vector (length d_out).
 * - `"in_out"` (GPT-2 Conv1D, W is [d_in, d_out]): W[i,o] + α·u[i]·v[o].
 * - `"out_in"` (nn.Linear, W is [d_out, d_in]): W[o,i] + α·v[o]·u[i].
 */
export function outerReference(
  w: ArrayLike<number>,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  alpha: number,
  layout: OuterLayout,
): Float64Array {
  const [rowVec, colVec] = layout === "in_out" ? [u, v] : [v, u];
  const rows = rowVec.length, cols = colVec.length;
  if (w.length !== rows * cols) {
    throw new RangeError(`outerReference: W has ${w.length} values, expected ${rows}×${cols}`);
  }
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const a = alpha * rowVec[r];
    for (let c = 0; c < cols; c++) out[r * cols + c] = w[r * cols + c] + a * colVec[c];
  }
  return out;
}

/**
 * C + XᵀX in f64, X being [n, d] row-major and C [d, d] (pass `null` for C = 0). Also returns the
 * elementwise magnitude sum |C| + |X|ᵀ|X|, which rounding-error bounds of a GPU sum are stated in.
 */
export function covarianceReference(
  c: ArrayLike<number> | null,
  x: ArrayLike<number>,
  n: number,
  d: number,
): { c: Float64Array; abs: Float64Array } {
  if (x.length !== n * d) {
    throw new RangeError(`covarianceReference: X has ${x.length} values, not ${n}×${d}`);
  }
  const out = new Float64Array(d * d);
  const abs = new Float64Array(d * d);
  if (c) {
    for (let i = 0; i < d * d; i++) {
      out[i] = c[i];
      abs[i] = Math.abs(c[i]);
    }
  }
  const row = new Float64Array(d);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < d; i++) row[i] = x[k * d + i];
    for (let i = 0; i < d; i++) {
      const xi = row[i];
      if (xi === 0) continue;
      const base = i * d;
      for (let j = 0; j < d; j++) {
        const p = xi * row[j];
        out[base + j] += p;
        abs[base + j] += Math.abs(p);
      }
    }
  }
  return { c: out, abs };
}

/**
 * Cholesky factor L (lower, f64) of the symmetric matrix C + λI, reading only C's lower triangle.
 * Throws naming the pivot index and value when C + λI is not positive definite.
 */
export function choleskyReference(c: ArrayLike<number>, d: number, damping = 0): Float64Array {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) l[i * d + j] = c[i * d + j];
  for (let i = 0; i < d; i++) l[i * d + i] += damping;
  for (let j = 0; j < d; j++) {
    let s = l[j * d + j];
    for (let p = 0; p < j; p++) s -= l[j * d + p] * l[j * d + p];
    if (!(s > 0) || !Number.isFinite(s)) {
      throw new RangeError(`choleskyReference: not positive definite at pivot ${j} (value ${s})`);
    }
    const ljj = Math.sqrt(s);
    l[j * d + j] = ljj;
    for (let i = j + 1; i < d; i++) {
      let t = l[i * d + j];
      for (let p = 0; p < j; p++) t -= l[i * d + p] * l[j * d + p];
      l[i * d + j] = t / ljj;
    }
  }
  return l;
}

/**
 * Solves L Lᵀ x = b in f64 for a lower factor L [d, d] and b of shape [d] or [d, r] (row-major,
 * `r = b.length / d` right-hand sides).
 */
export function choleskySolveReference(l: ArrayLike<number>, b: ArrayLike<number>, d: number): Float64Array {
  const r = b.length / d;
  if (!Number.isInteger(r)) {
    throw new RangeError(`choleskySolveReference: b has ${b.length} values, d = ${d}`);
  }
  const x = Float64Array.from(b as ArrayLike<number>);
  for (let c = 0; c < r; c++) {
    for (let i = 0; i < d; i++) { // L y = b
      let s = x[i * r + c];
      for (let p = 0; p < i; p++) s -= l[i * d + p] * x[p * r + c];
      x[i * r + c] = s / l[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) { // Lᵀ x = y
      let s = x[i * r + c];
      for (let p = i + 1; p < d; p++) s -= l[p * d + i] * x[p * r + c];
      x[i * r + c] = s / l[i * d + i];
    }
  }
  return x;
}

/** C·x in f64 for C [d, d] and x of shape [d] or [d, r]. */
export function multiplyReference(c: ArrayLike<number>, x: ArrayLike<number>, d: number): Float64Array {
  const r = x.length / d;
  const out = new Float64Array(x.length);
  for (let i = 0; i < d; i++) {
    for (let p = 0; p < d; p++) {
      const cip = c[i * d + p];
      for (let k = 0; k < r; k++) out[i * r + k] += cip * x[p * r + k];
    }
  }
  return out;
}

/** Euclidean norm (of all values). */
export function norm2(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/**
 * Estimates the 2-norm condition number λmax/λmin of an SPD matrix C [d, d] by power iteration on C
 * and on C⁻¹ (through an f64 Cholesky factor), in f64. Also returns both eigenvalue estimates.
 */
export function conditionEstimate(
  c: ArrayLike<number>,
  d: number,
  iterations = 200,
): { cond: number; lambdaMax: number; lambdaMin: number } {
  const l = choleskyReference(c, d);
  const power = (apply: (v: Float64Array) => Float64Array): number => {
    let v: Float64Array = new Float64Array(d).map((_, i) => 1 + ((i * 7919) % 13) / 13);
    let lambda = 0;
    for (let it = 0; it < iterations; it++) {
      const nv = norm2(v);
      v = v.map((a) => a / nv);
      const w = apply(v);
      lambda = w.reduce((s, a, i) => s + a * v[i], 0);
      v = w;
    }
    return lambda;
  };
  const lambdaMax = power((v) => multiplyReference(c, v, d));
  const lambdaMin = 1 / power((v) => choleskySolveReference(l, v, d));
  return { cond: lambdaMax / lambdaMin, lambdaMax, lambdaMin };
}

/**
 * W + α·Σ_k u_k v_kᵀ in f64 (u [rank, d_in], v [rank, d_out] row-major), laid out as {@link outerReference}.
 */
export function lowRankReference(
  w: ArrayLike<number>,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  rank: number,
  alpha: number,
  layout: OuterLayout,
): Float64Array {
  const din = u.length / rank, dout = v.length / rank;
  const [rowVec, colVec, rows, cols] = layout === "in_out" ? [u, v, din, dout] : [v, u, dout, din];
  if (w.length !== rows * cols) {
    throw new RangeError(`lowRankReference: W has ${w.length} values, expected ${rows}×${cols}`);
  }
  const out = Float64Array.from(w);
  for (let k = 0; k < rank; k++) {
    for (let r = 0; r < rows; r++) {
      const a = alpha * rowVec[k * rows + r];
      for (let c = 0; c < cols; c++) out[r * cols + c] += a * colVec[k * cols + c];
    }
  }
  return out;
}
