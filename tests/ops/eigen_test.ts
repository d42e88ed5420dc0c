import assert from "node:assert/strict";
import { GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { checkEigenFits, symmetricEigen } from "../../lib/ops/eigen.ts";
import { eigenReference } from "../../lib/ops/eigen_host.ts";
import { randArray, testGpu } from "../_util.ts";

/** A symmetric positive semi-definite XᵀX/k (k rows) with eigenvalues spread over decades, plus a shift. */
function spd(n: number, k: number, seed: number, shift = 0): Float64Array {
  const x = randArray(k * n, seed);
  for (let r = 0; r < k; r++) for (let j = 0; j < n; j++) x[r * n + j] *= 10 ** (-3 * j / n);
  const a = new Float64Array(n * n);
  for (let r = 0; r < k; r++) {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] += x[r * n + i] * x[r * n + j] / k;
  }
  for (let i = 0; i < n; i++) a[i * n + i] += shift;
  return a;
}

/**
 * Bounds: a backward-stable f32 method gives |λ̂ − λ| ≤ c·n·eps₃₂·‖A‖₂ (Weyl), checked with c = 4 against the
 * f64 reference; the residual ‖A v̂ − λ̂ v̂‖ and ‖V̂ᵀV̂ − I‖ are bounded the same way (relative to ‖A‖ and 1).
 */
async function check(a64: Float64Array, n: number, label: string): Promise<void> {
  const gpu = await testGpu();
  const a32 = Float32Array.from(a64);
  const t = Tensor.from(gpu, a32, [n, n], "f32");
  const res = await symmetricEigen(t);
  const ref = eigenReference(a32, n);
  const V = await res.vectors.read();
  t.dispose(), res.vectors.dispose();
  assert.ok(res.converged, `${label}: not converged after ${res.sweeps} sweeps`);
  const norm = Math.max(...ref.values.map(Math.abs), 1e-30);
  const tol = 4 * n * 2 ** -24 * norm + 1e-30;
  res.values.forEach((l, i) => {
    assert.ok(Math.abs(l - ref.values[i]) <= tol, `${label}: λ[${i}] ${l} vs ${ref.values[i]} (tol ${tol})`);
  });
  for (let j = 0; j < n; j++) {
    let r2 = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a32[i * n + k] * V[k * n + j];
      r2 += (s - res.values[j] * V[i * n + j]) ** 2;
    }
    assert.ok(Math.sqrt(r2) <= 8 * n * 2 ** -24 * norm, `${label}: residual of pair ${j}: ${Math.sqrt(r2)}`);
    for (let k = j; k < n; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += V[i * n + j] * V[i * n + k];
      assert.ok(Math.abs(d - (j === k ? 1 : 0)) <= 8 * n * 2 ** -24, `${label}: VᵀV[${j}, ${k}] = ${d}`);
    }
  }
}

Deno.test("symmetricEigen matches the f64 Jacobi reference (sizes 1, 2, 3, 17, 64; odd and even)", async () => {
  await check(Float64Array.of(2.5), 1, "n=1");
  await check(Float64Array.of(2, 1, 1, 2), 2, "n=2");
  await check(Float64Array.of(4, 1, -2, 1, 3, 0.5, -2, 0.5, 1), 3, "n=3");
  await check(spd(17, 9, 3), 17, "n=17 rank-deficient PSD");
  await check(spd(64, 200, 5, 0.01), 64, "n=64 PSD, eigenvalues over 6 decades");
});

Deno.test("symmetricEigen: diagonal input needs no rotation; degenerate eigenvalues", async () => {
  const n = 9;
  const d = new Float64Array(n * n);
  for (let i = 0; i < n; i++) d[i * n + i] = (i * 7) % 5 - 2;
  await check(d, n, "diagonal with repeats");
  const gpu = await testGpu();
  const t = Tensor.from(gpu, Float32Array.from(d), [n, n], "f32");
  const r = await symmetricEigen(t);
  assert.equal(r.sweeps, 1, "one sweep detects a diagonal matrix");
  t.dispose(), r.vectors.dispose();
});

Deno.test("symmetricEigen rejects non-square, f16 and non-finite input, and matrices beyond one binding", async () => {
  const gpu = await testGpu();
  const bad = Tensor.from(gpu, new Float32Array(6), [2, 3], "f32");
  await assert.rejects(() => symmetricEigen(bad), GpuError);
  bad.dispose();
  const nan = Tensor.from(gpu, Float32Array.of(1, NaN, NaN, 1), [2, 2], "f32");
  await assert.rejects(() => symmetricEigen(nan), /non-finite/);
  nan.dispose();
  const small = await testGpu({ maxBindingBytes: 1024 });
  const big = Tensor.from(small, new Float32Array(32 * 32), [32, 32], "f32");
  await assert.rejects(() => symmetricEigen(big), /one storage binding/);
  big.dispose();
});

Deno.test("symmetricEigen's binding limit: n² · 4 bytes = the cap works, one more row is refused naming the fix", async () => {
  // a device capped at 16·16·4 bytes per binding (as lavapipe's 128 MiB caps n at 5,792)
  const small = await testGpu({ maxBindingBytes: 16 * 16 * 4 });
  const a = spd(16, 20, 9, 0.1);
  const fits = Tensor.from(small, Float32Array.from(a), [16, 16], "f32");
  const r = await symmetricEigen(fits);
  const ref = eigenReference(Float32Array.from(a), 16);
  r.values.forEach((l, i) => assert.ok(Math.abs(l - ref.values[i]) <= 1e-5 * ref.values[15]));
  fits.dispose(), r.vectors.dispose();
  const over = Tensor.from(small, new Float32Array(17 * 17), [17, 17], "f32");
  await assert.rejects(
    () => symmetricEigen(over),
    (e: Error) =>
      /needs 1156 bytes/.test(e.message) && /allows 1024/.test(e.message) &&
      /at most n = 16/.test(e.message) &&
      /maxStorageBufferBindingSize/.test(e.message) && /Fix: .*≥ 1156 bytes/.test(e.message),
  );
  over.dispose();
  // d_ff = 14,336 (Llama-3-8B, Mistral): 822 MB fits a GPU's ≥ 1 GiB binding, not lavapipe's 128 MiB
  assert.doesNotThrow(() => checkEigenFits(2 ** 30, 14336));
  assert.throws(() => checkEigenFits(2 ** 27, 14336), /needs 822083584 bytes .*at most n = 5792/);
  assert.doesNotThrow(() => checkEigenFits(2 ** 27, 5792));
});
