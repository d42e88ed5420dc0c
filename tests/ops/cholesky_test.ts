import assert from "node:assert/strict";
import { type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { choleskyFactor, type CholeskyOptions } from "../../lib/ops/cholesky.ts";
import {
  choleskyReference,
  choleskySolveReference,
  conditionEstimate,
  covarianceReference,
  multiplyReference,
  norm2,
} from "../../lib/testing/linalg_reference.ts";
import { assertClose, randArray, testGpu } from "../_util.ts";

const U = 2 ** -24; // unit roundoff of f32 (half its machine epsilon)
/** Higham's γ_m = m·u / (1 − m·u). */
const gamma = (m: number) => (m * U) / (1 - m * U);

/** A random orthogonal d×d matrix: a product of three Householder reflections (dense, exact in f64). */
function orthogonal(d: number, seed: number): Float64Array {
  let q = new Float64Array(d * d);
  for (let i = 0; i < d; i++) q[i * d + i] = 1;
  for (let h = 0; h < 3; h++) {
    const v = randArray(d, seed + h);
    const vv = v.reduce((s, a) => s + a * a, 0);
    const next = new Float64Array(d * d); // Q (I − 2 v vᵀ / vᵀv)
    for (let i = 0; i < d; i++) {
      let qv = 0;
      for (let p = 0; p < d; p++) qv += q[i * d + p] * v[p];
      for (let j = 0; j < d; j++) next[i * d + j] = q[i * d + j] - (2 * qv * v[j]) / vv;
    }
    q = next;
  }
  return q;
}

/**
 * C = AᵀA/n + εI in f32 with A = G·diag(s)·Qᵀ [n, d] (G uniform random, Q orthogonal): `decay` sets
 * how fast s falls (s_j = decay^(j/(d−1))), so the spectrum — and cond(C) — is controlled while the
 * eigenvectors are dense (not a benign diagonal scaling).
 */
function spd(d: number, seed: number, decay = 1, eps = 1e-3): Float32Array {
  const n = 2 * d + 3;
  const g = randArray(n * d, seed);
  const q = orthogonal(d, seed + 100);
  const a = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let p = 0; p < d; p++) s += g[r * d + p] * (d > 1 ? decay ** (p / (d - 1)) : 1) * q[j * d + p];
      a[r * d + j] = s;
    }
  }
  const { c } = covarianceReference(null, a, n, d);
  const out = new Float32Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) out[i * d + j] = c[i * d + j] / n + (i === j ? eps : 0);
  }
  // exactly symmetric after rounding
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) out[j * d + i] = out[i * d + j];
  return out;
}

/**
 * Backward error of the factor, checked componentwise with Higham's Theorem 10.3: the computed
 * L̂ satisfies L̂L̂ᵀ = C + ΔC with |ΔC| ≤ γ_{d+1}·|L̂||L̂ᵀ|, whatever order the inner products are
 * summed in (blocked, fma). Also: L̂ is lower triangular with a positive diagonal.
 */
function checkFactor(l: Float32Array, c: ArrayLike<number>, d: number, label: string): void {
  const g = gamma(d + 1);
  for (let i = 0; i < d; i++) {
    if (!(l[i * d + i] > 0)) throw new Error(`${label}: L[${i},${i}] = ${l[i * d + i]}`);
    for (let j = i + 1; j < d; j++) {
      if (l[i * d + j] !== 0) throw new Error(`${label}: L[${i},${j}] = ${l[i * d + j]} above the diagonal`);
    }
    for (let j = 0; j <= i; j++) {
      let s = 0, abs = 0;
      for (let p = 0; p <= j; p++) {
        s += l[i * d + p] * l[j * d + p];
        abs += Math.abs(l[i * d + p] * l[j * d + p]);
      }
      const err = Math.abs(s - c[i * d + j]);
      if (!(err <= g * abs)) {
        throw new Error(`${label}: (L Lᵀ − C)[${i},${j}] = ${err} > γ_{d+1}·(|L||Lᵀ|) = ${g * abs}`);
      }
    }
  }
}

/**
 * Backward error of a solve, componentwise (Higham's Theorem 10.4): (C + ΔC) x̂ = b with
 * |ΔC| ≤ γ_{3d+1}|L̂||L̂ᵀ|, so |b − C x̂| ≤ γ_{3d+1}·|L̂||L̂ᵀ||x̂| elementwise (C, b taken as the f32
 * values the GPU holds; residual evaluated in f64). Returns ‖C x̂ − b‖/‖b‖.
 */
function checkSolveBackward(
  x: Float32Array,
  l: Float32Array,
  c: ArrayLike<number>,
  b: ArrayLike<number>,
  d: number,
  label: string,
): number {
  const r = b.length / d;
  const cx = multiplyReference(c, x, d);
  // |L||Lᵀ||x| = |L| (|L|ᵀ |x|)
  const t = new Float64Array(x.length);
  for (let p = 0; p < d; p++) {
    for (let i = p; i < d; i++) {
      const a = Math.abs(l[i * d + p]);
      for (let k = 0; k < r; k++) t[p * r + k] += a * Math.abs(x[i * r + k]);
    }
  }
  const g = gamma(3 * d + 1);
  for (let i = 0; i < d; i++) {
    for (let k = 0; k < r; k++) {
      let bound = 0;
      for (let p = 0; p <= i; p++) bound += Math.abs(l[i * d + p]) * t[p * r + k];
      const res = Math.abs(cx[i * r + k] - b[i * r + k]);
      if (!(res <= g * bound)) {
        throw new Error(`${label}: |C x − b|[${i},${k}] = ${res} > γ_{3d+1}·|L||Lᵀ||x| = ${g * bound}`);
      }
    }
  }
  return norm2(cx.map((v, i) => v - b[i])) / norm2(b);
}

/**
 * Normwise accuracy of a solve x̂ of C x = b (C, b the f32 values the GPU holds; all checks in f64):
 * - backward error η = ‖C x̂ − b‖/(‖C‖‖x̂‖) ≤ 2·√(3d+1)·u: the probabilistic form (Higham & Mary 2019)
 *   of Theorem 10.4's γ_{3d+1}, i.e. rounding errors of the d-term sums adding up like a random walk;
 *   the rigorous componentwise version is {@link checkSolveBackward}. Equivalently the relative
 *   residual ‖C x̂ − b‖/‖b‖ ≤ 2·√(3d+1)·u·‖C‖‖x̂‖/‖b‖.
 * - forward error ‖x̂ − x‖/‖x‖ against the f64 solve of the same matrix ≤ (cond + 4)·u: to first order
 *   the forward error is at most cond·η, and Cholesky's η is in practice about u (the assertion above
 *   allows more, but a larger η would also show here); + 4u covers the few roundings of the
 *   O(1)-conditioned tiny cases (one sqrt, two divisions). At cond ~1e6–1e7 f32 keeps only 1–2 digits,
 *   and this is what the test can promise there.
 * Returns the forward error.
 */
function checkAccuracy(
  x: Float32Array,
  c: ArrayLike<number>,
  b: ArrayLike<number>,
  d: number,
  label: string,
): number {
  const { cond, lambdaMax } = conditionEstimate(c, d);
  const res = norm2(multiplyReference(c, x, d).map((v, i) => v - b[i]));
  const eta = res / (lambdaMax * norm2(x));
  const etaTol = 2 * Math.sqrt(3 * d + 1) * U;
  assert.ok(
    eta <= etaTol,
    `${label}: backward error ${eta} (residual ‖Cx−b‖/‖b‖ = ${res / norm2(b)}) > ${etaTol}`,
  );
  const want = choleskySolveReference(choleskyReference(c, d), b, d);
  const fe = norm2(want.map((v, i) => v - x[i])) / norm2(want);
  const feTol = (cond + 4) * U;
  assert.ok(
    fe <= feTol,
    `${label}: forward error ${fe} > (cond + 4)·u = ${feTol}, cond ${cond.toExponential(2)}`,
  );
  return fe;
}

function withDamping(c: Float32Array, d: number, damping: number): Float64Array {
  const out = Float64Array.from(c);
  for (let i = 0; i < d; i++) out[i * d + i] += damping;
  return out;
}

/** Factor C on the GPU, check the factor, solve b [d] and B [d, 3] with it, return the forward errors. */
async function factorAndSolve(
  gpu: Gpu,
  c: Float32Array,
  d: number,
  seed: number,
  label: string,
  opts: CholeskyOptions = {},
): Promise<number> {
  const tc = Tensor.from(gpu, c, [d, d], "f32");
  const f = await choleskyFactor(tc, opts);
  const l = await f.L.read();
  const cd = withDamping(c, d, opts.damping ?? 0);
  checkFactor(l, cd, d, label);
  if (!opts.inPlace) assert.deepEqual(await tc.read(), c, `${label}: C was modified`);
  let worst = 0;
  for (const r of [1, 3]) {
    const b = randArray(d * r, seed + r);
    const tb = Tensor.from(gpu, b, r === 1 ? [d] : [d, r], "f32");
    const tx = await f.solve(tb);
    assert.deepEqual(tx.shape, tb.shape);
    const x = await tx.read();
    checkSolveBackward(x, l, cd, b, d, `${label} r=${r}`);
    // each right-hand side on its own
    for (let k = 0; k < r; k++) {
      const col = (a: ArrayLike<number>) => Float64Array.from({ length: d }, (_, i) => a[i * r + k]);
      const fe = checkAccuracy(Float32Array.from(col(x)), cd, col(b), d, `${label} rhs ${k}/${r}`);
      worst = Math.max(worst, fe);
    }
    assert.deepEqual(await tb.read(), b, `${label}: b was modified`);
    tb.dispose();
    tx.dispose();
  }
  f.dispose();
  if (!opts.inPlace) tc.dispose();
  return worst;
}

Deno.test("choleskyFactor + solve: odd sizes, backward error within γ bounds, forward error vs f64", async () => {
  const gpu = await testGpu();
  for (const kernel of ["tiled", "direct", "texel"] as const) {
    for (const d of [1, 3, 17, 65, 130]) {
      await factorAndSolve(gpu, spd(d, d), d, d + 7, `d=${d} ${kernel}`, { kernel });
    }
  }
  // d % 4 = 0: the texel update's quad stores, with partial quads on the diagonal
  await factorAndSolve(gpu, spd(196, 196), 196, 203, "d=196 texel", { kernel: "texel" });
});

Deno.test("choleskyFactor: ill-conditioned covariances (cond ~7e4 as in ROME's, and ~4e6)", async () => {
  const gpu = await testGpu();
  const d = 130;
  for (const [decay, eps, seed, lo, hi] of [[0.0065, 1e-7, 5, 3e4, 2e5], [0.0007, 1e-9, 6, 1e6, 1e7]]) {
    const c = spd(d, seed, decay, eps);
    const { cond } = conditionEstimate(c, d);
    assert.ok(cond >= lo && cond <= hi, `test matrix has cond ${cond}, wanted [${lo}, ${hi}]`);
    const fe = await factorAndSolve(gpu, c, d, seed + 1, `cond ${cond.toExponential(1)}`);
    console.log(`  d=${d} cond ${cond.toExponential(2)}: forward error ${fe.toExponential(2)}`);
  }
});

Deno.test("choleskyFactor walks row chunks of C and L (tiny binding caps), also in place", async () => {
  const d = 150;
  // rows of 600 B: a 7-row cap gives 22 chunks, not aligned to the 64-row blocks and tiles
  const gpu = await testGpu({ maxBindingBytes: 600 * 7 });
  const c = spd(d, 9, 0.1, 1e-3);
  const tc = Tensor.from(gpu, c, [d, d], "f32");
  assert.ok(tc.chunks.length > 10);
  tc.dispose();
  for (const kernel of ["texel", "direct"] as const) {
    for (const inPlace of [false, true]) {
      await factorAndSolve(gpu, c, d, 11, `chunked inPlace=${inPlace} ${kernel}`, { inPlace, kernel });
    }
  }
  await gpu.destroy();
});

Deno.test("choleskyFactor: damping λI is added to the diagonal", async () => {
  const gpu = await testGpu();
  const d = 70;
  // rank-deficient PSD C = AᵀA/n with n = 20 < d, plus a negative diagonal entry: needs damping
  const a = randArray(20 * d, 21);
  const { c: c64 } = covarianceReference(null, a, 20, d);
  const c = Float32Array.from(c64, (v) => v / 20);
  c[40 * d + 40] -= 5;
  await assert.rejects(() => choleskyFactor(Tensor.from(gpu, c, [d, d], "f32")), /not positive definite/);
  await factorAndSolve(gpu, c, d, 22, "damped", { damping: 6 });
});

Deno.test("choleskyFactor: a non-SPD matrix throws naming the op, pivot index and value", async () => {
  const gpu = await testGpu();
  // [[1, 2], [2, 1]]: L00 = 1, L10 = 2, second pivot 1 − 4 = −3 (exact in f32)
  await assert.rejects(() => choleskyFactor(Tensor.from(gpu, [1, 2, 2, 1], [2, 2], "f32")), (e: Error) => {
    assert.ok(e instanceof GpuError);
    assert.match(e.message, /^choleskyFactor: .*not positive definite: pivot 1 is -3 /);
    return true;
  });
  // identity with a negative entry in the third block column: pivot 140 is −2
  const d = 150;
  const c = new Float32Array(d * d);
  for (let i = 0; i < d; i++) c[i * d + i] = 1;
  c[140 * d + 140] = -2;
  await assert.rejects(() => choleskyFactor(Tensor.from(gpu, c, [d, d], "f32")), /pivot 140 is -2 /);
  // a NaN reaches the pivots as a non-finite value
  c[140 * d + 140] = 1;
  c[100 * d + 3] = NaN;
  await assert.rejects(() => choleskyFactor(Tensor.from(gpu, c, [d, d], "f32")), /pivot 100 is NaN/);
  // past 32 block steps the status is read back during the factorisation (early exit): same error
  const big = 64 * 33 + 5;
  const cb = new Float32Array(big * big);
  for (let i = 0; i < big; i++) cb[i * big + i] = 1;
  cb[10 * big + 10] = -0.5;
  await assert.rejects(() => choleskyFactor(Tensor.from(gpu, cb, [big, big], "f32")), /pivot 10 is -0.5 /);
  // damping λ = 3 makes the first matrix SPD: [[4, 2], [2, 4]] x = [6, 6] has x = [1, 1]
  // (cond 3: a few roundings of u each, 8u is ample)
  const f = await choleskyFactor(Tensor.from(gpu, [1, 2, 2, 1], [2, 2], "f32"), { damping: 3 });
  const x = await (await f.solve(Tensor.from(gpu, [6, 6], [2], "f32"))).read();
  assertClose(x, [1, 1], 8 * U, 0, "damped 2×2");
  f.dispose();
});

Deno.test("one factor serves many right-hand sides; bad shapes give clear errors", async () => {
  const gpu = await testGpu();
  const d = 65;
  const c = spd(d, 31);
  const f = await choleskyFactor(Tensor.from(gpu, c, [d, d], "f32"));
  for (const [t, r] of [1, 5, 64, 2].entries()) {
    const b = randArray(d * r, 40 + t);
    const x = await (await f.solve(Tensor.from(gpu, b, r === 1 ? [d] : [d, r], "f32"))).read();
    for (let k = 0; k < r; k++) {
      const col = (a: ArrayLike<number>) => Float64Array.from({ length: d }, (_, i) => a[i * r + k]);
      checkAccuracy(Float32Array.from(col(x)), c, col(b), d, `rhs ${k} of ${r}`);
    }
  }
  await assert.rejects(() => f.solve(Tensor.zeros(gpu, [d + 1], "f32")), /choleskySolve: b must be \[65\]/);
  f.dispose();
  await assert.rejects(() => f.solve(Tensor.zeros(gpu, [d], "f32")), /disposed/);
  await assert.rejects(() => choleskyFactor(Tensor.zeros(gpu, [3, 4], "f32")), /must be square/);
});
