/**
 * The MEMIT and AlphaEdit solves on random data against the formulas as the reference code writes them,
 * solved in f64 on the host by Gaussian elimination with partial pivoting:
 *   MEMIT      adj = (λC + KᵀK)⁻¹ Kᵀ
 *   AlphaEdit  adj = (P (KᵀK + K_pᵀK_p) + L2·I)⁻¹ P Kᵀ   (non-symmetric; P = U₀U₀ᵀ from the f64 reference eigen)
 * and the null-space property ΔW·k ≈ 0 for every preserved key k.
 */
import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { alphaEditAdj, memitAdj, updateCache } from "../../lib/edit/memit_solve.ts";
import { checkNullRanks, nullSpaceOf } from "../../lib/edit/null_space.ts";
import { eigenReference } from "../../lib/ops/eigen_host.ts";
import { randArray, testGpu } from "../_util.ts";
import { relErr } from "./_oracle.ts";

/** X [B, d] solved from A X' = Bᵀ: returns rows of the solution for a dense f64 A [d, d] and rhs rows [B, d]. */
function solveDense(a: Float64Array, rhsRows: ArrayLike<number>, d: number, B: number): Float64Array {
  const out = new Float64Array(B * d);
  for (let b = 0; b < B; b++) {
    const m = Float64Array.from(a), x = Float64Array.from({ length: d }, (_, j) => rhsRows[b * d + j]);
    for (let c = 0; c < d; c++) {
      let p = c;
      for (let r = c + 1; r < d; r++) if (Math.abs(m[r * d + c]) > Math.abs(m[p * d + c])) p = r;
      if (p !== c) {
        for (let j = 0; j < d; j++) [m[c * d + j], m[p * d + j]] = [m[p * d + j], m[c * d + j]];
        [x[c], x[p]] = [x[p], x[c]];
      }
      for (let r = c + 1; r < d; r++) {
        const f = m[r * d + c] / m[c * d + c];
        if (f === 0) continue;
        for (let j = c; j < d; j++) m[r * d + j] -= f * m[c * d + j];
        x[r] -= f * x[c];
      }
    }
    for (let c = d - 1; c >= 0; c--) {
      let s = x[c];
      for (let j = c + 1; j < d; j++) s -= m[c * d + j] * x[j];
      x[c] = s / m[c * d + c];
    }
    out.set(x, b * d);
  }
  return out;
}

/** XᵀX of rows X [n, d]. */
function gram(x: ArrayLike<number>, n: number, d: number): Float64Array {
  const g = new Float64Array(d * d);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) g[i * d + j] += x[r * d + i] * x[r * d + j];
  }
  return g;
}

Deno.test("memitAdj equals (λC + KᵀK)⁻¹Kᵀ solved in f64 (d = 50, 7 keys)", async () => {
  const gpu = await testGpu();
  const d = 50, B = 7, lambda = 3;
  const x = randArray(200 * d, 11);
  const c = gram(x, 200, d).map((v) => v / 200);
  const K = randArray(B * d, 12, 2);
  const t = Tensor.from(gpu, Float32Array.from(c), [d, d], "f32");
  const adj = await memitAdj(t, K, B, lambda);
  const a = gram(K, B, d);
  for (let i = 0; i < d * d; i++) a[i] += lambda * Float32Array.from(c)[i];
  const want = solveDense(a, K, d, B);
  assert.ok(relErr(adj, want) < 1e-4, `adj rel. error ${relErr(adj, want)}`);
  await assert.rejects(() => memitAdj(t, K, B, 0), /mom2_update_weight must be > 0/);
  t.dispose();
});

Deno.test("alphaEditAdj equals the reference's non-symmetric solve, with a cache; ΔW·k_preserved ≈ 0", async () => {
  const gpu = await testGpu();
  const d = 48, N = 30, B = 5, Bp = 4, l2 = 0.5, threshold = 1e-3;
  // preserved keys span 30 of 48 dimensions: C has an exact 18-dimensional null space
  const xp = randArray(N * d, 21);
  const c32 = Float32Array.from(gram(xp, N, d), (v) => v / N);
  const t = Tensor.from(gpu, c32, [d, d], "f32");
  const ns = await nullSpaceOf(t, threshold);
  const ref = eigenReference(c32, d);
  const rank = ref.values.filter((v) => v < threshold).length;
  assert.equal(rank, d - N, "reference rank");
  assert.equal(ns.rank, rank, "GPU eigensolver rank");
  const P = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      for (let k = 0; k < rank; k++) P[i * d + j] += ref.vectors[i * d + k] * ref.vectors[j * d + k];
    }
  }
  const K = randArray(B * d, 22, 2), Kp = randArray(Bp * d, 23, 2);
  const cacheG = await updateCache(ns.u0, null, Kp, Bp);
  const adj = await alphaEditAdj(ns.u0, cacheG, K, B, l2);
  // reference: M = P (KᵀK + K_pᵀK_p) + L2·I, rhs = (P Kᵀ)ᵀ
  const S = gram(K, B, d), Sp = gram(Kp, Bp, d);
  const M = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += P[i * d + k] * (S[k * d + j] + Sp[k * d + j]);
      M[i * d + j] = s + (i === j ? l2 : 0);
    }
  }
  const rhs = new Float64Array(B * d);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += P[i * d + k] * K[b * d + k];
      rhs[b * d + i] = s;
    }
  }
  const want = solveDense(M, rhs, d, B);
  assert.ok(relErr(adj, want) < 1e-4, `adj rel. error ${relErr(adj, want)}`);
  // the null-space property: |adj_b · x| ≤ 1e-4 ‖adj_b‖‖x‖ for every preserved key x
  for (let b = 0; b < B; b++) {
    let na = 0;
    for (let j = 0; j < d; j++) na += adj[b * d + j] ** 2;
    for (let r = 0; r < N; r++) {
      let s = 0, nx = 0;
      for (let j = 0; j < d; j++) s += adj[b * d + j] * xp[r * d + j], nx += xp[r * d + j] ** 2;
      assert.ok(Math.abs(s) <= 1e-4 * Math.sqrt(na * nx), `adj_${b}·x_${r} = ${s}`);
    }
  }
  // an empty null space writes nothing; an all-empty range is an error naming the fix
  const full = Tensor.from(
    gpu,
    Float32Array.from({ length: 9 }, (_, i) => i % 4 === 0 ? 1 : 0),
    [3, 3],
    "f32",
  );
  const none = await nullSpaceOf(full, 0.5);
  assert.equal(none.rank, 0);
  const zero = await alphaEditAdj(none.u0, null, Float32Array.of(1, 2, 3), 1, 1);
  assert.ok(zero.every((v) => v === 0));
  assert.throws(
    () => checkNullRanks(new Map([[0, 0], [1, 0]]), 3, 0.5, "x.yaml"),
    /raise nullspace_threshold/,
  );
  assert.deepEqual(checkNullRanks(new Map([[0, 0], [1, 2]]), 3, 0.5, "x.yaml").length, 1);
  await assert.rejects(() => alphaEditAdj(ns.u0, null, K, B, 0), /L2 must be > 0/);
  full.dispose(), none.u0.dispose(), ns.u0.dispose(), t.dispose();
});
