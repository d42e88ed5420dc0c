import assert from "node:assert/strict";
import { type DType, type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { argmaxRows, klDivergence, logSoftmax, tokenNll, topK } from "../../lib/ops/loss.ts";
import {
  centralDiff,
  directionalDiff,
  dot,
  klDivergenceRef,
  logSoftmaxRef,
  tokenNllRef,
} from "../../lib/testing/transformer_reference.ts";
import { assertClose, randArray, rng, roundF16, testGpu } from "../_util.ts";

const U32 = 2 ** -24; // unit roundoff of f32 (all loss math is f32)

function upload(gpu: Gpu, v: Float32Array, shape: number[], dtype: DType): [Tensor, Float32Array] {
  return [Tensor.from(gpu, v, shape, dtype), dtype === "f16" ? roundF16(v) : v];
}

/**
 * Bound on the error of a row's log-sum-exp over V logits spanning a range R (max − min): the max is
 * exact; each exp(x − max) has ≤ (3 + 2R) ulp relative error (WGSL's exp bound); the sum of V positive
 * terms adds ≤ (⌈V/256⌉ + 8)·u relative (sequential per-thread sums, then an 8-level tree); log turns
 * relative into absolute error and adds ≤ 2^-21 (its absolute bound near 1) or 3 ulp; + max adds
 * ≤ u·|lse|. Log-probs c = x − lse add one more rounding of |c| ≤ R + log V.
 */
function lseTol(V: number, R: number): number {
  return (Math.ceil(V / 256) + 8 + 3 + 2 * R + 3) * U32 + 2 ** -21 + 2 * U32 * (R + Math.log(V) + 10);
}

/** R = the largest max − min over rows. */
function rowRange(x: Float32Array, V: number): number {
  let R = 0;
  for (let o = 0; o < x.length; o += V) {
    let lo = Infinity, hi = -Infinity;
    for (let v = 0; v < V; v++) {
      lo = Math.min(lo, x[o + v]);
      hi = Math.max(hi, x[o + v]);
    }
    R = Math.max(R, hi - lo);
  }
  return R;
}

/**
 * Bounds for KL = Σ p(c − i) and its gradient w·p·(c − i − KL) on one row, from the data. Each c is off
 * by ≤ t = lseTol and each p = exp(c) by ≤ p·(t + (3 + 2|c|)u) (WGSL's exp bound), so the sum is off by
 * ≤ Σ p·t + Σ p(t + (3 + 2|c|)u)|c − i| = t(1 + A) + u·B with A = Σ p|c − i|, B = Σ p(3 + 2|c|)|c − i|,
 * plus (⌈V/256⌉ + 8)·u·A for the V-term reduction. Each gradient entry is off by
 * ≤ w·(t + klTol + p(t + (3 + 2|c|)u)|c − i − KL|) + 2u·|g|.
 */
function klTols(x: Float32Array, V: number, row: number, init: Float32Array, kl: number, w: number) {
  const c = logSoftmaxRef(x, V, [row]);
  const t = lseTol(V, rowRange(x.subarray(row * V, (row + 1) * V), V));
  let A = 0, B = 0;
  for (let v = 0; v < V; v++) {
    const p = Math.exp(c[v]), e = Math.abs(c[v] - init[v]);
    A += p * e;
    B += p * (3 + 2 * Math.abs(c[v])) * e;
  }
  const klTol = t * (1 + A) + U32 * B + (Math.ceil(V / 256) + 8) * U32 * A;
  let G = 0;
  for (let v = 0; v < V; v++) {
    const p = Math.exp(c[v]), e = Math.abs(c[v] - init[v] - kl);
    G = Math.max(G, p * (t + (3 + 2 * Math.abs(c[v])) * U32) * e + 2 * U32 * p * e);
  }
  return { klTol, gTol: Math.abs(w) * (t + klTol + G) };
}

Deno.test("logSoftmax matches the f64 reference (f32/f16 logits, V = 5, 1000, 50257, row subsets)", async () => {
  const gpu = await testGpu();
  for (const V of [5, 1000, 50257]) {
    const T = 3;
    for (const dtype of ["f32", "f16"] as const) {
      const [tl, x] = upload(gpu, randArray(T * V, V, 8), [T, V], dtype);
      const tol = lseTol(V, rowRange(x, V));
      const all = await logSoftmax(tl);
      assert.equal(all.dtype, "f32");
      assertClose(await all.read(), logSoftmaxRef(x, V, [0, 1, 2]), tol, 0, `logSoftmax ${dtype} V=${V}`);
      const rows = Uint32Array.from([2, 0, 2]);
      const some = await logSoftmax(tl, rows);
      assert.deepEqual(some.shape, [3, V]);
      assertClose(await some.read(), logSoftmaxRef(x, V, rows), tol, 0, `rows ${dtype} V=${V}`);
      for (const t of [tl, all, some]) t.dispose();
    }
  }
});

Deno.test("tokenNll: reference = central differences; GPU nll and dLogits = reference", async () => {
  const gpu = await testGpu();
  for (const V of [5, 1000, 50257]) {
    const T = 4;
    const x = randArray(T * V, 10 + V, 6);
    const r = rng(V);
    const targets = Int32Array.from({ length: T }, () => Math.floor(r() * V));
    targets[2] = -1; // ignored row
    const weights = Float32Array.from({ length: T }, () => 0.25 + r());
    // (1) f64: the gradient of L = Σ w·nll against central differences (h = 1e-4: truncation
    // h²/6·|L‴| ≤ 1e-9·Σw, roundoff 2^-53·|L|/h ≤ 1e-10). Every coordinate for small V; for V = 50257
    // three random directions (a full FD there is O(V²)).
    const ref = tokenNllRef(x, V, targets, weights);
    const L = (xs: Float64Array) => dot(tokenNllRef(xs, V, targets).nll, weights);
    if (V <= 1000) {
      assertClose(ref.dLogits, centralDiff(L, x, 1e-4), 1e-7, 0, `NLL FD V=${V}`);
    } else {
      for (let k = 0; k < 3; k++) {
        const u = randArray(T * V, 99 + k);
        const dd = directionalDiff(L, x, u, 1e-4);
        assertClose([dot(ref.dLogits, u)], [dd], 1e-7 * (1 + Math.abs(dd)), 0, `NLL dir FD V=${V}`);
      }
    }
    // (2) GPU vs reference on what the tensors hold
    for (const dtype of ["f32", "f16"] as const) {
      const [tl, xv] = upload(gpu, x, [T, V], dtype);
      const want = tokenNllRef(xv, V, targets, weights);
      const tol = lseTol(V, rowRange(xv, V));
      const got = await tokenNll(tl, targets, weights);
      assertClose(got.nll, want.nll, tol, 0, `nll ${dtype} V=${V}`);
      assert.equal(got.nll[2], 0);
      // softmax = exp(c): |Δ| ≤ p·(Δc + (3 + 2|c|)u) ≤ tol + 4u (p·|c| ≤ 1/e); times w ≤ 1.25
      assertClose(await got.dLogits.read(), want.dLogits, 1.25 * (tol + 4 * U32), 0, `dLogits ${dtype}`);
      // unweighted: weights default to 1
      const plain = await tokenNll(tl, targets);
      assertClose(plain.nll, want.nll, tol, 0, "nll, no weights");
      const unit = tokenNllRef(xv, V, targets).dLogits;
      assertClose(await plain.dLogits.read(), unit, tol + 4 * U32, 0, "dLogits, no weights");
      // weights passed as an options object
      const viaOpts = await tokenNll(tl, targets, { weights });
      assertClose(await viaOpts.dLogits.read(), want.dLogits, 1.25 * (tol + 4 * U32), 0, "{ weights }");
      viaOpts.dLogits.dispose();
      for (const t of [tl, got.dLogits, plain.dLogits]) t.dispose();
    }
  }
});

Deno.test("klDivergence: reference = central differences; GPU kl and gradient = reference; into", async () => {
  const gpu = await testGpu();
  for (const V of [5, 1000, 50257]) {
    const T = 3, row = 1, w = 0.625;
    const x = randArray(T * V, 20 + V, 4);
    // P_init: the log-softmax of nearby logits (as in ROME: the unedited model's distribution)
    const x0 = Float32Array.from(x.subarray(row * V, (row + 1) * V), (v, i) => v + 0.5 * Math.sin(i));
    const init = Float32Array.from(logSoftmaxRef(x0, V, [0]));
    // (1) f64 FD of KL (as above: h = 1e-4, errors ≤ 1e-9)
    const ref = klDivergenceRef(x, V, row, init, w);
    const L = (xs: Float64Array) => w * klDivergenceRef(xs, V, row, init).kl;
    if (V <= 1000) {
      assertClose(ref.dLogits, centralDiff(L, x, 1e-4), 1e-7, 0, `KL FD V=${V}`);
    } else {
      for (let k = 0; k < 3; k++) {
        const u = randArray(T * V, 199 + k);
        const dd = directionalDiff(L, x, u, 1e-4);
        assertClose([dot(ref.dLogits, u)], [dd], 1e-7 * (1 + Math.abs(dd)), 0, `KL dir FD V=${V}`);
      }
    }
    // (2) GPU vs reference
    for (const dtype of ["f32", "f16"] as const) {
      const [tl, xv] = upload(gpu, x, [T, V], dtype);
      const ti = Tensor.from(gpu, init, [V], "f32");
      const want = klDivergenceRef(xv, V, row, init, w);
      const { klTol, gTol } = klTols(xv, V, row, init, want.kl, w);
      const tl1 = lseTol(V, rowRange(xv, V));
      const got = await klDivergence(tl, row, ti, { weight: w });
      assertClose([got.kl], [want.kl], klTol, 0, `kl ${dtype} V=${V}`);
      assertClose(await got.dLogits.read(), want.dLogits, gTol, 0, `KL grad ${dtype} V=${V}`);
      // into: KL gradient added onto tokenNll's dLogits
      const targets = Int32Array.from([0, V - 1, 1 % V]);
      const nll = await tokenNll(tl, targets);
      const back = await klDivergence(tl, row, ti, { weight: w, into: nll.dLogits });
      assert.equal(back.dLogits, nll.dLogits);
      const sum = tokenNllRef(xv, V, targets).dLogits.map((v, i) => v + want.dLogits[i]);
      assertClose(await nll.dLogits.read(), sum, gTol + 2 * (tl1 + 4 * U32), 0, `NLL + KL ${dtype}`);
      for (const t of [tl, ti, got.dLogits, nll.dLogits]) t.dispose();
    }
  }
});

Deno.test("GPU losses agree with central differences of themselves (f32, V = 1000)", async () => {
  // A directional derivative of the GPU's own loss values against ⟨GPU gradient, u⟩. In f32 the
  // difference quotient has roundoff ≈ 2·lseTol·Σw/2h plus the rounding of x ± h·u (≈ u·|x|·|g|₁/h),
  // and truncation h²/6·|L‴|; with h = 1e-2 all of it is below 2e-3·(1 + |derivative|).
  const gpu = await testGpu();
  const T = 3, V = 1000, h = 1e-2;
  const x = randArray(T * V, 5, 4), u = randArray(T * V, 6);
  const targets = Int32Array.from([7, -1, 999]), weights = Float32Array.from([0.5, 1, 2]);
  const init = Float32Array.from(logSoftmaxRef(x.map((v, i) => v + Math.cos(i)), V, [0]).subarray(0, V));
  const ti = Tensor.from(gpu, init, [V], "f32");
  const shifted = (s: number) => Tensor.from(gpu, x.map((v, i) => v + s * h * u[i]), [T, V], "f32");
  const loss = async (t: Tensor) => {
    const { nll } = await tokenNll(t, targets, weights);
    return dot(nll, weights) + 0.75 * (await klDivergence(t, 2, ti)).kl;
  };
  const dd = (await loss(shifted(1)) - await loss(shifted(-1))) / (2 * h);
  const tl = Tensor.from(gpu, x, [T, V], "f32");
  const { dLogits } = await tokenNll(tl, targets, weights);
  await klDivergence(tl, 2, ti, { weight: 0.75, into: dLogits });
  const g = await dLogits.read();
  assertClose([dot(g, u)], [dd], 2e-3 * (1 + Math.abs(dd)), 0, "GPU directional derivative");
  // and the check can fail: a gradient 1 % too large does not pass
  assert.throws(() =>
    assertClose([1.01 * dot(g, u)], [dd], 2e-3 * (1 + Math.abs(dd)), 0, "negative control")
  );
});

Deno.test("losses on row-chunked logits (f32 and f16 chunkings differ from dLogits')", async () => {
  const T = 7, V = 1000;
  const gpu = await testGpu({ maxBindingBytes: 2 * V * 4 }); // 2 f32 rows or 4 f16 rows per chunk
  for (const dtype of ["f32", "f16"] as const) {
    const [tl, x] = upload(gpu, randArray(T * V, 30, 5), [T, V], dtype);
    assert.equal(tl.chunks.length, dtype === "f32" ? 4 : 2);
    const tol = lseTol(V, rowRange(x, V));
    const rows = Uint32Array.from([6, 0, 3, 4]);
    assertClose(await (await logSoftmax(tl, rows)).read(), logSoftmaxRef(x, V, rows), tol, 0, "chunked lsm");
    const targets = Int32Array.from([1, 2, -1, 999, 4, 5, 6]);
    const got = await tokenNll(tl, targets);
    const want = tokenNllRef(x, V, targets);
    assertClose(got.nll, want.nll, tol, 0, `chunked nll ${dtype}`);
    const init = Float32Array.from(logSoftmaxRef(x, V, [2]));
    const ti = Tensor.from(gpu, init, [V], "f32");
    const kl = await klDivergence(tl, 5, ti, { into: got.dLogits });
    const kref = klDivergenceRef(x, V, 5, init);
    const { klTol, gTol } = klTols(x, V, 5, init, kref.kl, 1);
    assertClose([kl.kl], [kref.kl], klTol, 0, "chunked kl");
    const sum = want.dLogits.map((v, i) => v + kref.dLogits[i]);
    // the NLL part as in the tokenNll test (≤ tol + 4u), plus the KL part, plus one f32 addition
    assertClose(await got.dLogits.read(), sum, tol + 4 * U32 + gTol + U32, 0, `chunked NLL + KL ${dtype}`);
    // argmax with ties: the first index among equal maxima wins
    const y = x.slice();
    y[1 * V + 17] = 100;
    y[1 * V + 900] = 100;
    y[6 * V + 999] = 100;
    const ty = Tensor.from(gpu, y, [T, V], dtype);
    const am = await argmaxRows(ty);
    const yv = dtype === "f16" ? roundF16(y) : y;
    const wantAm = Array.from({ length: T }, (_, r) => {
      let b = 0;
      for (let v = 1; v < V; v++) if (yv[r * V + v] > yv[r * V + b]) b = v;
      return b;
    });
    assert.deepEqual(Array.from(am), wantAm);
    assert.equal(am[1], 17);
    assert.equal(am[6], 999);
    assert.deepEqual(Array.from(await argmaxRows(ty, Uint32Array.from([6, 1]))), [999, 17]);
  }
  await gpu.destroy();
});

Deno.test("topK reads one row (f16 rows at unaligned byte offsets too) and sorts like a full sort", async () => {
  const gpu = await testGpu();
  for (const [V, dtype] of [[5, "f16"], [1001, "f16"], [50257, "f32"]] as const) {
    const T = 3;
    const [tl, x] = upload(gpu, randArray(T * V, V, 3), [T, V], dtype);
    for (const row of [0, 1, 2]) {
      const k = Math.min(10, V + 2);
      const got = await topK(tl, row, k);
      const order = Array.from({ length: V }, (_, i) => i)
        .sort((a, b) => x[row * V + b] - x[row * V + a] || a - b)
        .slice(0, k);
      assert.deepEqual(Array.from(got.ids), order, `topK ids V=${V} row=${row}`);
      assert.deepEqual(Array.from(got.values), order.map((i) => x[row * V + i]));
    }
  }
});

Deno.test("losses reject bad targets, rows and shapes with a GpuError", async () => {
  const gpu = await testGpu();
  const tl = Tensor.zeros(gpu, [2, 5], "f32");
  await assert.rejects(() => tokenNll(tl, Int32Array.from([0, 5])), GpuError);
  await assert.rejects(() => tokenNll(tl, Int32Array.from([0])), GpuError);
  await assert.rejects(() => tokenNll(tl, Int32Array.from([0, 1]), new Float32Array(3)), GpuError);
  await assert.rejects(() => logSoftmax(tl, Uint32Array.from([2])), GpuError);
  const ti = Tensor.zeros(gpu, [5], "f32");
  await assert.rejects(() => klDivergence(tl, 2, ti), GpuError);
  await assert.rejects(() => klDivergence(tl, 0, Tensor.zeros(gpu, [4], "f32")), GpuError);
  await assert.rejects(() => klDivergence(tl, 0, ti, { into: Tensor.zeros(gpu, [2, 5], "f16") }), GpuError);
  await assert.rejects(() => argmaxRows(tl, Uint32Array.from([3])), GpuError);
  await assert.rejects(() => topK(tl, 0, -1), GpuError);
});
