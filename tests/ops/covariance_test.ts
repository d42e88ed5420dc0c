import assert from "node:assert/strict";
import { type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import type { DType } from "../../lib/gpu/dtype.ts";
import {
  COVARIANCE_ROWS_PER_DISPATCH,
  covarianceAccumulate,
  type GramKernel,
} from "../../lib/ops/covariance.ts";
import { covarianceReference } from "../../lib/testing/linalg_reference.ts";
import { randArray, roundF16, testGpu } from "../_util.ts";

/** A random symmetric d×d matrix (a plausible running C). */
function symmetric(d: number, seed: number): Float32Array {
  const r = randArray(d * d, seed);
  const s = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) s[i * d + j] = r[i * d + j] + r[j * d + i];
  return s;
}

/**
 * Checks C' = C + Σ_batches XᵀX against f64. Every C element is a recursive f32 sum of the n products
 * X[k,i]·X[k,j] (exact in f32 for f16 inputs, one rounding each for f32 inputs inside `fma`) plus one
 * addition into C per dispatch and per call, so the classic bound |Ĉ − C| ≤ γ_{n+calls+1}·(|C₀| + Σ|x x|)
 * with γ_m ≈ m·2⁻²⁴ holds; we use (n + calls + 2)·2⁻²⁴. f16 X is compared against its f16-rounded
 * values, which is what the GPU holds.
 */
function checkCov(got: Float32Array, c0: Float32Array | null, xs: Float32Array[], d: number, label: string) {
  const want = new Float64Array(d * d);
  const abs = new Float64Array(d * d); // |C₀| + Σ|X[k,i]·X[k,j]|
  if (c0) { for (let i = 0; i < d * d; i++) [want[i], abs[i]] = [c0[i], Math.abs(c0[i])]; }
  let n = 0;
  for (const x of xs) {
    const r = covarianceReference(null, x, x.length / d, d);
    for (let i = 0; i < d * d; i++) [want[i], abs[i]] = [want[i] + r.c[i], abs[i] + r.abs[i]];
    n += x.length / d;
  }
  const gamma = (n + xs.length + 2) * 2 ** -24;
  for (let i = 0; i < d * d; i++) {
    const tol = gamma * abs[i] + 1e-30;
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      throw new Error(
        `${label}: C[${Math.floor(i / d)}, ${i % d}] = ${got[i]}, expected ${want[i]} (tol ${tol})`,
      );
    }
  }
  // symmetry is exact: both triangles are the same f32 sums (or copies of them)
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) {
      if (got[i * d + j] !== got[j * d + i]) throw new Error(`${label}: C not symmetric at (${i}, ${j})`);
    }
  }
}

async function runCase(
  gpu: Gpu,
  d: number,
  ns: number[],
  dtype: DType,
  symmetricMode: boolean | undefined,
  seed: number,
  kernel: GramKernel = "auto",
  expectChunks = false,
): Promise<void> {
  const c0 = seed % 2 ? symmetric(d, seed) : null;
  const tc = c0 ? Tensor.from(gpu, c0, [d, d], "f32") : Tensor.zeros(gpu, [d, d], "f32");
  const xs: Float32Array[] = [];
  for (const [b, n] of ns.entries()) {
    const raw = randArray(n * d, seed + 10 + b, 2);
    const x = dtype === "f16" ? roundF16(raw) : raw;
    xs.push(x);
    const tx = Tensor.from(gpu, x, [n, d], dtype);
    if (expectChunks) assert.ok(tx.chunks.length > 1 && tc.chunks.length > 1, "expected chunked C and X");
    await covarianceAccumulate(tc, tx, { symmetric: symmetricMode, kernel });
    tx.dispose();
  }
  const got = await tc.read();
  tc.dispose();
  checkCov(got, c0, xs, d, `cov d=${d} n=${ns} ${dtype} symmetric=${symmetricMode} ${kernel}`);
}

Deno.test("covarianceAccumulate matches the f64 reference: odd sizes, f32/f16 X, both modes and kernels", async () => {
  const gpu = await testGpu();
  let seed = 1;
  for (const kernel of ["tiled", "direct", "texel"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      for (
        const [d, ns] of [[1, [1]], [3, [5, 2]], [17, [33]], [65, [70]], [130, [17, 100]], [132, [
          9,
          70,
        ]]] as const
      ) {
        for (const sym of [false, true]) await runCase(gpu, d, [...ns], dtype, sym, seed++, kernel);
      }
    }
  }
});

Deno.test("covarianceAccumulate: default mode and more rows than one dispatch sums", async () => {
  const gpu = await testGpu();
  await runCase(gpu, 19, [COVARIANCE_ROWS_PER_DISPATCH + 37], "f32", undefined, 41);
  await runCase(gpu, 70, [130], "f16", undefined, 42);
});

Deno.test("covarianceAccumulate walks row chunks of C and X (tiny binding caps)", async () => {
  // C rows are 150 f32 (600 B): a 7-row cap gives 22 C chunks, not aligned to the tiles
  const gpu = await testGpu({ maxBindingBytes: 600 * 7 });
  let seed = 60;
  for (const kernel of ["tiled", "direct", "texel"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      for (const sym of [false, true]) {
        await runCase(gpu, 150, [77, 20], dtype, sym, seed++, kernel, true);
      }
    }
  }
  await gpu.destroy();
});

Deno.test("covarianceAccumulate rejects wrong shapes and dtypes", async () => {
  const gpu = await testGpu();
  const c = Tensor.zeros(gpu, [4, 4], "f32");
  await assert.rejects(() => covarianceAccumulate(c, Tensor.zeros(gpu, [3, 5], "f32")), (e: Error) => {
    assert.ok(e instanceof GpuError);
    assert.match(e.message, /covarianceAccumulate: X must be \[n, 4\]/);
    return true;
  });
  const h = Tensor.zeros(gpu, [4, 4], "f16");
  if (h.dtype === "f16") {
    await assert.rejects(() => covarianceAccumulate(h, c), /C must be f32/);
  }
  await gpu.sync();
});
