import assert from "node:assert/strict";
import { type DType, type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from "../../lib/ops/norm.ts";
import {
  centralDiff,
  dot,
  layerNormBackwardRef,
  layerNormRef,
  rmsNormBackwardRef,
  rmsNormRef,
} from "../../lib/testing/transformer_reference.ts";
import { assertClose, randArray, roundF16, testGpu } from "../_util.ts";

const U32 = 2 ** -24; // unit roundoff of f32 (GPU math)
const U16 = 2 ** -11; // unit roundoff of f16 (one rounding of an f16 output)

/**
 * Roundings a row sum of n terms goes through, for whichever kernel "auto" picks: the workgroup kernel
 * (GPUs) has 256 threads add ⌈n/256⌉ terms each, then 8 tree levels; the thread-per-row kernel (CPU
 * adapters) keeps 4 interleaved partial sums of ⌈n/4⌉ terms, then up to 6 more roundings combining them.
 * The sum's error is ≤ this · u · Σ|terms|.
 */
function sumDepth(n: number): number {
  return Math.max(Math.ceil(n / 256) + 8, Math.ceil(n / 4) + 6);
}

const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

/** Uploads host values and returns what the tensor really holds (f16-rounded for f16). */
function upload(gpu: Gpu, v: Float32Array, shape: number[], dtype: DType): [Tensor, Float32Array] {
  return [Tensor.from(gpu, v, shape, dtype), dtype === "f16" ? roundF16(v) : v];
}

/** Row statistics the tolerances scale with: max rstd (LayerNorm), max r (RMSNorm), max |x̂|. */
function rowStats(x: Float32Array, rows: number, d: number, eps: number) {
  let rstd = 0, rinv = 0, xhat = 0;
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * d, (r + 1) * d));
    const mu = row.reduce((a, b) => a + b, 0) / d;
    const vr = row.reduce((a, b) => a + (b - mu) ** 2, 0) / d;
    const s = 1 / Math.sqrt(vr + eps);
    rstd = Math.max(rstd, s);
    rinv = Math.max(rinv, 1 / Math.sqrt(row.reduce((a, b) => a + b * b, 0) / d + eps));
    xhat = Math.max(xhat, ...row.map((v) => Math.abs(v - mu) * s));
  }
  return { rstd, rinv, xhat };
}

const SIZES = [1, 3, 65, 257, 8193];
const EPS = 1e-5;

Deno.test("layerNorm and rmsNorm forward match the f64 reference (f32/f16 storage, odd d)", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const d of SIZES) {
      const rows = d > 1000 ? 2 : 3;
      const [tx, x] = upload(gpu, randArray(rows * d, d, 2), [rows, d], dtype);
      const [tw, w] = upload(gpu, randArray(d, d + 1, 1.5), [d], dtype);
      const [tb, b] = upload(gpu, randArray(d, d + 2, 0.5), [d], dtype);
      const st = rowStats(x, rows, d, EPS);
      const k = sumDepth(d);
      // f16 output: one extra rounding, ≤ u16·|y| (rtol); f32 output: covered by the chained-ops term.
      const rtol = dtype === "f16" ? U16 : 0;

      // LayerNorm: μ has error ≤ k·u·max|x|, which moves x̂ by rstd·k·u·max|x|; rstd has relative error
      // ≤ (k + 4)·u (variance sum, division, inverseSqrt's 2 ulp); then ≤ 4 more roundings per element.
      const ln = await layerNorm(tx, tw, tb, EPS);
      assert.equal(ln.dtype, dtype);
      const lnRef = layerNormRef(x, w, b, rows, d, EPS);
      const lnTol = (k + 8) * U32 * (maxAbs(w) * (st.xhat + st.rstd * maxAbs(x)) + maxAbs(b));
      assertClose(await ln.read(), lnRef, lnTol, rtol, `layerNorm ${dtype} d=${d}`);
      // without bias
      const ln0 = await layerNorm(tx, tw, null, EPS);
      assertClose(await ln0.read(), layerNormRef(x, w, null, rows, d, EPS), lnTol, rtol, `LN no bias`);

      // RMSNorm: mean(x²) has relative error ≤ (k + 1)·u, r = rsqrt(·) half of it plus 2 ulp, then
      // two products.
      const rn = await rmsNorm(tx, tw, EPS);
      const rnRef = rmsNormRef(x, w, rows, d, EPS);
      assertClose(await rn.read(), rnRef, (k + 8) * U32 * maxAbs(rnRef), rtol, `rmsNorm ${dtype} d=${d}`);
      for (const t of [tx, tw, tb, ln, ln0, rn]) t.dispose();
    }
  }
});

Deno.test("layerNorm/rmsNorm outDtype: f32 in → f16 out and f16 in → f32 out", async () => {
  const gpu = await testGpu();
  const d = 65, rows = 4;
  const x = randArray(rows * d, 11), w = randArray(d, 12), b = randArray(d, 13);
  const tw = Tensor.from(gpu, w, [d], "f32"), tb = Tensor.from(gpu, b, [d], "f32");
  const tol = 40 * U32 * 8; // (k + 8)·u·S with k = 9, S ≤ 8 for these unit-range inputs
  // f32 input, f16 output = the reference rounded once to f16
  const y16 = await layerNorm(Tensor.from(gpu, x, [rows, d], "f32"), tw, tb, EPS, { outDtype: "f16" });
  assert.equal(y16.dtype, "f16");
  assertClose(await y16.read(), layerNormRef(x, w, b, rows, d, EPS), tol, U16, "LN f32→f16");
  // f16 input, f32 output: reference on the rounded input, no output rounding
  const x16 = Tensor.from(gpu, x, [rows, d], "f16");
  const y32 = await rmsNorm(x16, tw, EPS, { outDtype: "f32" });
  assert.equal(y32.dtype, "f32");
  assertClose(await y32.read(), rmsNormRef(roundF16(x), w, rows, d, EPS), tol, 0, "RMS f16→f32");
});

Deno.test("norm backward: f64 reference = central differences; GPU = reference (f32/f16)", async () => {
  const gpu = await testGpu();
  for (const d of [1, 3, 65, 257]) {
    const rows = 3;
    const x = randArray(rows * d, 100 + d, 2), w = randArray(d, 200 + d, 1.5);
    const dy = randArray(rows * d, 300 + d);
    // (1) the reference gradient against central differences of L(x) = Σ dy·f(x) in f64. With h = 1e-4
    // the truncation error is h²/6·|L‴| ≲ 1e-8·rstd³·Σ|dy| and the roundoff 2^-53·|L|/h ≲ 1e-10, so 2e-6
    // relative to the gradient's scale is a safe bound that still catches any wrong term.
    const lnL = (xs: Float64Array) => dot(dy, layerNormRef(xs, w, null, rows, d, EPS));
    const rmL = (xs: Float64Array) => dot(dy, rmsNormRef(xs, w, rows, d, EPS));
    const lnG = layerNormBackwardRef(x, w, dy, rows, d, EPS);
    const rmG = rmsNormBackwardRef(x, w, dy, rows, d, EPS);
    assertClose(lnG, centralDiff(lnL, x, 1e-4), 2e-6 * Math.max(1, maxAbs(lnG)), 0, `LN FD d=${d}`);
    assertClose(rmG, centralDiff(rmL, x, 1e-4), 2e-6 * Math.max(1, maxAbs(rmG)), 0, `RMS FD d=${d}`);
    // the check is not vacuous: a gradient off by 1e-3 in every other entry fails it
    if (d > 1) {
      const bad = Float64Array.from(lnG, (v, i) => v + 1e-3 * (i % 2));
      assert.throws(() => assertClose(bad, centralDiff(lnL, x, 1e-4), 2e-6 * maxAbs(lnG)));
    }

    // (2) GPU backward against the reference backward, on what the tensors hold.
    for (const dtype of ["f32", "f16"] as const) {
      const [tx, xv] = upload(gpu, x, [rows, d], dtype);
      const [tw, wv] = upload(gpu, w, [d], dtype);
      const [tg, gv] = upload(gpu, dy, [rows, d], dtype);
      const st = rowStats(xv, rows, d, EPS);
      const k = sumDepth(d), G = maxAbs(gv) * maxAbs(wv);
      // LayerNorm: the terms of rstd·(g − mean g − x̂·mean(g x̂)) are ≤ rstd·G·(2 + x̂²); the statistics
      // (μ, rstd, both means) carry ≤ (k + 8)·u relative error, and the μ error also shifts x̂ by
      // rstd·k·u·max|x| (only matters for tiny variances).
      const lnRef = layerNormBackwardRef(xv, wv, gv, rows, d, EPS);
      const lnS = st.rstd * G * (2 + st.xhat ** 2) * (1 + st.rstd * maxAbs(xv));
      const dx = await layerNormBackward(tx, tw, tg, EPS);
      assert.equal(dx.dtype, "f32");
      assertClose(await dx.read(), lnRef, 2 * (k + 8) * U32 * lnS, 0, `LN bwd ${dtype} d=${d}`);
      // RMSNorm: terms r·|g| and |x|·r³·mean|g·x|; r³ triples r's relative error.
      const rmRef = rmsNormBackwardRef(xv, wv, gv, rows, d, EPS);
      const rmS = st.rinv * G + maxAbs(xv) ** 2 * st.rinv ** 3 * G;
      const dr = await rmsNormBackward(tx, tw, tg, EPS);
      assertClose(await dr.read(), rmRef, 3 * (k + 8) * U32 * rmS, 0, `RMS bwd ${dtype} d=${d}`);
      for (const t of [tx, tw, tg, dx, dr]) t.dispose();
    }
  }
});

Deno.test("norms work on row-chunked activations (chunk boundaries differ between operands)", async () => {
  const d = 65, rows = 13;
  // binding cap of 3 f32 rows: x (f32) has 5 chunks, dy (f16) and y (f16) hold 6 rows per chunk
  const gpu = await testGpu({ maxBindingBytes: 3 * d * 4 });
  const x = randArray(rows * d, 21), w = randArray(d, 22), b = randArray(d, 23);
  const dy = roundF16(randArray(rows * d, 24));
  const tx = Tensor.from(gpu, x, [rows, d], "f32"), tw = Tensor.from(gpu, w, [d], "f32");
  const tb = Tensor.from(gpu, b, [d], "f32"), tg = Tensor.from(gpu, dy, [rows, d], "f16");
  assert.ok(tx.chunks.length === 5 && tg.chunks.length === 3);
  const tol = 40 * U32 * 30; // (k + 8)·u·S with k = 9 and S < 30 for these inputs (see the tests above)
  const y = await layerNorm(tx, tw, tb, EPS, { outDtype: "f16" });
  assertClose(await y.read(), layerNormRef(x, w, b, rows, d, EPS), tol, U16, "chunked LN");
  const yr = await rmsNorm(tx, tw, EPS);
  assertClose(await yr.read(), rmsNormRef(x, w, rows, d, EPS), tol, 0, "chunked RMS");
  const dx = await layerNormBackward(tx, tw, tg, EPS);
  assertClose(await dx.read(), layerNormBackwardRef(x, w, dy, rows, d, EPS), tol, 0, "chunked LN bwd");
  const dr = await rmsNormBackward(tx, tw, tg, EPS, { outDtype: "f16" });
  assertClose(await dr.read(), rmsNormBackwardRef(x, w, dy, rows, d, EPS), tol, U16, "chunked RMS bwd");
  await gpu.destroy();
});

Deno.test("norms reject mismatched shapes with a GpuError", async () => {
  const gpu = await testGpu();
  const x = Tensor.zeros(gpu, [2, 4], "f32"), w = Tensor.zeros(gpu, [5], "f32");
  await assert.rejects(() => layerNorm(x, w, null, EPS), GpuError);
  await assert.rejects(() => rmsNormBackward(x, Tensor.zeros(gpu, [4], "f32"), w, EPS), GpuError);
  await assert.rejects(() => rmsNorm(x, Tensor.zeros(gpu, [4], "f32"), -1), GpuError);
});

/**
 * Roundings of a row sum of n terms in each kernel design (`auto` picks one of them on this adapter):
 * `workgroup` as in {@link sumDepth}; `thread` sums with 4 or 8 interleaved partial sums (≤ ⌈n/4⌉ terms
 * each, plus ≤ 3 tail terms) combined in 3 levels.
 */
function kernelDepth(kernel: "workgroup" | "thread", n: number): number {
  return kernel === "thread" ? Math.ceil(n / 4) + 6 : sumDepth(n);
}

Deno.test("both norm kernels (workgroup for GPUs, thread for CPU adapters) match the f64 reference", async () => {
  const gpu = await testGpu();
  for (const kernel of ["workgroup", "thread"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      for (const d of SIZES) {
        const rows = d > 1000 ? 2 : 5;
        const [tx, x] = upload(gpu, randArray(rows * d, 400 + d, 2), [rows, d], dtype);
        const [tw, w] = upload(gpu, randArray(d, 500 + d, 1.5), [d], dtype);
        const [tb, b] = upload(gpu, randArray(d, 600 + d, 0.5), [d], dtype);
        const [tg, g] = upload(gpu, randArray(rows * d, 700 + d), [rows, d], dtype);
        const st = rowStats(x, rows, d, EPS);
        const k = kernelDepth(kernel, d);
        const rtol = dtype === "f16" ? U16 : 0;
        const label = `${kernel} ${dtype} d=${d}`;
        // the bounds of the forward and backward tests above, with this kernel's summation depth
        const ln = await layerNorm(tx, tw, tb, EPS, { kernel });
        const lnTol = (k + 8) * U32 * (maxAbs(w) * (st.xhat + st.rstd * maxAbs(x)) + maxAbs(b));
        assertClose(await ln.read(), layerNormRef(x, w, b, rows, d, EPS), lnTol, rtol, `LN ${label}`);
        const rn = await rmsNorm(tx, tw, EPS, { kernel });
        const rnRef = rmsNormRef(x, w, rows, d, EPS);
        assertClose(await rn.read(), rnRef, (k + 8) * U32 * maxAbs(rnRef), rtol, `RMS ${label}`);
        const G = maxAbs(g) * maxAbs(w);
        const lnS = st.rstd * G * (2 + st.xhat ** 2) * (1 + st.rstd * maxAbs(x));
        const dx = await layerNormBackward(tx, tw, tg, EPS, { kernel });
        const lnB = layerNormBackwardRef(x, w, g, rows, d, EPS);
        assertClose(await dx.read(), lnB, 2 * (k + 8) * U32 * lnS, 0, `LN bwd ${label}`);
        const rmS = st.rinv * G + maxAbs(x) ** 2 * st.rinv ** 3 * G;
        const dr = await rmsNormBackward(tx, tw, tg, EPS, { kernel });
        const rmB = rmsNormBackwardRef(x, w, g, rows, d, EPS);
        assertClose(await dr.read(), rmB, 3 * (k + 8) * U32 * rmS, 0, `RMS bwd ${label}`);
        for (const t of [tx, tw, tb, tg, ln, rn, dx, dr]) t.dispose();
      }
    }
  }
  const x = Tensor.zeros(gpu, [2, 4], "f32"), w = Tensor.zeros(gpu, [4], "f32");
  await assert.rejects(
    () => layerNorm(x, w, null, EPS, { kernel: "fast" as "thread" }),
    /unknown kernel fast/,
  );
});

Deno.test("both norm kernels work on row-chunked activations", async () => {
  const d = 65, rows = 13;
  const gpu = await testGpu({ maxBindingBytes: 3 * d * 4 });
  const x = randArray(rows * d, 31), w = randArray(d, 32), b = randArray(d, 33);
  const dy = roundF16(randArray(rows * d, 34));
  const tx = Tensor.from(gpu, x, [rows, d], "f32"), tw = Tensor.from(gpu, w, [d], "f32");
  const tb = Tensor.from(gpu, b, [d], "f32"), tg = Tensor.from(gpu, dy, [rows, d], "f16");
  assert.ok(tx.chunks.length === 5 && tg.chunks.length === 3);
  for (const kernel of ["workgroup", "thread"] as const) {
    // (k + 8)·u·S with k ≤ 23 (thread, d = 65) and S < 30 for these inputs (see the tests above)
    const tol = 31 * U32 * 30;
    const y = await layerNorm(tx, tw, tb, EPS, { outDtype: "f16", kernel });
    assertClose(await y.read(), layerNormRef(x, w, b, rows, d, EPS), tol, U16, `${kernel} chunked LN`);
    const yr = await rmsNorm(tx, tw, EPS, { kernel });
    assertClose(await yr.read(), rmsNormRef(x, w, rows, d, EPS), tol, 0, `${kernel} chunked RMS`);
    const dx = await layerNormBackward(tx, tw, tg, EPS, { kernel });
    assertClose(
      await dx.read(),
      layerNormBackwardRef(x, w, dy, rows, d, EPS),
      tol,
      0,
      `${kernel} chunked LN bwd`,
    );
    const dr = await rmsNormBackward(tx, tw, tg, EPS, { outDtype: "f16", kernel });
    assertClose(
      await dr.read(),
      rmsNormBackwardRef(x, w, dy, rows, d, EPS),
      tol,
      U16,
      `${kernel} chunked RMS bwd`,
    );
  }
  await gpu.destroy();
});
