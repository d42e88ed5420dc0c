/**
 * Plain-TypeScript references for the matmul and gemv kernels: f64 accumulation, plus the per-output
 * magnitude Σ|α·a·b| + |bias| + |c| that error bounds are built from (see {@link gammaBound}).
 * @module
 */

/** Shapes and flags of a reference product; matrices are row-major, batched ones back to back. */
export interface MatmulRefSpec {
  /** op(A) is [m, k], op(B) is [k, n]. */
  m: number;
  n: number;
  k: number;
  /** Number of batches (default 1). */
  batch?: number;
  /** A holds one matrix per batch (default true when batch > 1). */
  aBatched?: boolean;
  /** B holds one matrix per batch (default true when batch > 1). */
  bBatched?: boolean;
  /** A stored [k, m]. */
  transA?: boolean;
  /** B stored [n, k]. */
  transB?: boolean;
  /** n values added to every row. */
  bias?: ArrayLike<number>;
  /** Existing C ([batch, m, n]) added to the result. */
  c?: ArrayLike<number>;
  /** Scale of the product (default 1). */
  alpha?: number;
}

/** A reference result: values and the magnitude each value's rounding errors scale with. */
export interface RefResult {
  /** The exact-ish (f64) result. */
  values: Float64Array;
  /** Per output: Σ_k |α·a·b| + |bias| + |c_old|. */
  magnitude: Float64Array;
}

/** C = α·op(A)·op(B) + bias + C in f64 (row-major, [batch, m, n]). */
export function matmulReference(a: ArrayLike<number>, b: ArrayLike<number>, spec: MatmulRefSpec): RefResult {
  const { m, n, k } = spec;
  const batch = spec.batch ?? 1;
  const aB = spec.aBatched ?? batch > 1, bB = spec.bBatched ?? batch > 1;
  const alpha = spec.alpha ?? 1;
  const values = new Float64Array(batch * m * n);
  const magnitude = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = aB ? z * m * k : 0, bo = bB ? z * k * n : 0, co = z * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, mag = 0;
        for (let l = 0; l < k; l++) {
          const av = a[ao + (spec.transA ? l * m + i : i * k + l)];
          const bv = b[bo + (spec.transB ? j * k + l : l * n + j)];
          s += av * bv;
          mag += Math.abs(av * bv);
        }
        let v = alpha * s;
        mag *= Math.abs(alpha);
        if (spec.bias) {
          v += spec.bias[j];
          mag += Math.abs(spec.bias[j]);
        }
        if (spec.c) {
          v += spec.c[co + i * n + j];
          mag += Math.abs(spec.c[co + i * n + j]);
        }
        values[co + i * n + j] = v;
        magnitude[co + i * n + j] = mag;
      }
    }
  }
  return { values, magnitude };
}

/**
 * y[r] = Σ_c W[r, c]·x[c] for W row-major [rows, cols] (`transposed` false), or y[c] = Σ_r W[r, c]·x[r]
 * (`transposed` true), in f64 with magnitudes.
 */
export function gemvReference(
  w: ArrayLike<number>,
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  transposed: boolean,
): RefResult {
  const len = transposed ? cols : rows;
  const values = new Float64Array(len);
  const magnitude = new Float64Array(len);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const p = w[r * cols + c] * x[transposed ? r : c];
      const o = transposed ? c : r;
      values[o] += p;
      magnitude[o] += Math.abs(p);
    }
  }
  return { values, magnitude };
}

/**
 * γ_n = n·u / (1 − n·u), the classic bound factor for n roundings of unit roundoff u: a sum of n
 * products computed in floating point in any order satisfies |ŝ − s| ≤ γ_n · Σ|terms| (Higham, Accuracy
 * and Stability of Numerical Algorithms, §3.1).
 */
export function gammaBound(n: number, u: number): number {
  const nu = n * u;
  if (nu >= 1) return Infinity;
  return nu / (1 - nu);
}

/** Largest |got − want| over all entries. */
export function maxError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
  return e;
}
