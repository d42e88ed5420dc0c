/**
 * The least-squares solves of MEMIT and AlphaEdit on the GPU, in f32, for B keys K [B, d] (rows):
 *
 * - MEMIT: adj = (λ·C + KᵀK)⁻¹ Kᵀ — one blocked Cholesky factor of the d×d system, the B right-hand
 *   sides solved in column chunks (at most one storage binding and 65,535 columns each).
 * - AlphaEdit: adj = (P (KᵀK + cache) + L2·I)⁻¹ P Kᵀ with the null-space projector P = U₀U₀ᵀ (U₀ [d, r]
 *   orthonormal). That non-symmetric system has the same solution as the r×r SPD one
 *   adj = U₀ (U₀ᵀ(KᵀK + cache)U₀ + L2·I)⁻¹ U₀ᵀKᵀ: any solution x = (PK − P S x)/L2 lies in range(P), so
 *   x = U₀y and U₀ᵀ applied to the system gives (U₀ᵀSU₀ + L2·I) y = U₀ᵀKᵀ. keg keeps the cache of earlier
 *   batches' keys in that projected form, G = Σ (K_p U₀)ᵀ(K_p U₀) [r, r], which is exactly U₀ᵀ·cache·U₀.
 *
 * adj is returned as rows [B, d] (the key-side factors of ΔW = Rᵀ·adj).
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import type { Gpu } from "../gpu/device.ts";
import { GpuError } from "../gpu/errors.ts";
import { cast, scale } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import { choleskyFactor } from "../ops/cholesky.ts";

/** Transposes a row-major [rows, cols] array. */
export function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

/** Right-hand-side columns per solve so that one [d, cols] f32 tensor fits a binding. */
function columnChunk(gpu: Gpu, d: number): number {
  return Math.max(1, Math.min(65535, Math.floor(gpu.maxBindingBytes / (4 * Math.max(1, d)))));
}

/** Solves with a factor for the columns of Kᵀ given as rows K [B, d]; returns the solution as rows. */
async function solveRows(
  factor: { solve(b: Tensor): Promise<Tensor> },
  gpu: Gpu,
  rowsIn: Float32Array,
  B: number,
  d: number,
): Promise<Float32Array> {
  const out = new Float32Array(B * d);
  const step = columnChunk(gpu, d);
  for (let b0 = 0; b0 < B; b0 += step) {
    const n = Math.min(step, B - b0);
    const rhs = Tensor.from(gpu, transpose(rowsIn.subarray(b0 * d, (b0 + n) * d), n, d), [d, n], "f32", {
      name: "memit.rhs",
    });
    const x = await factor.solve(rhs);
    const xs = await x.read();
    rhs.dispose(), x.dispose();
    out.set(transpose(xs, d, n), b0 * d);
  }
  return out;
}

/**
 * MEMIT's adj [B, d] = ((λ·C + KᵀK)⁻¹ Kᵀ)ᵀ. C is f32 [d, d] (possibly chunked) on `gpu`; λ > 0.
 * Throws naming mom2_update_weight when the system is not positive definite in f32.
 */
export async function memitAdj(c: Tensor, K: Float32Array, B: number, lambda: number): Promise<Float32Array> {
  const gpu = c.gpu, d = c.shape[0];
  if (!(lambda > 0)) throw new Error(`mom2_update_weight must be > 0, got ${lambda}`);
  const a = await cast(c, "f32");
  const kt = Tensor.from(gpu, K, [B, d], "f32", { name: "memit.K" });
  try {
    await scale(a, lambda);
    await matmul(kt, kt, { transA: true, out: a, accumulate: true });
    let factor;
    try {
      factor = await choleskyFactor(a, { inPlace: true });
    } catch (e) {
      if (!(e instanceof GpuError)) throw e;
      throw new Error(
        `λ·C + KKᵀ (λ = mom2_update_weight = ${lambda}, d = ${d}, ${B} keys) is not positive definite in f32 ` +
          `(${e.message}); raise mom2_update_weight or check the covariance statistics`,
      );
    }
    try {
      return await solveRows(factor, gpu, K, B, d);
    } finally {
      factor.dispose();
    }
  } finally {
    a.dispose(), kt.dispose();
  }
}

/** The projected keys K U₀ [B, r] (AlphaEdit), on U₀'s device. */
export async function projectKeys(u0: Tensor, K: Float32Array, B: number): Promise<Float32Array> {
  const r = u0.shape[1];
  if (r === 0 || B === 0) return new Float32Array(B * r);
  const kt = Tensor.from(u0.gpu, K, [B, u0.shape[0]], "f32", { name: "alphaedit.K" });
  const y = await matmul(kt, u0, { outDtype: "f32" });
  const out = await y.read();
  kt.dispose(), y.dispose();
  return out;
}

/** (P K)ᵀ = K U₀ U₀ᵀ [B, d] (for checks against the reference's P). */
export async function projectRows(u0: Tensor, K: Float32Array, B: number): Promise<Float32Array> {
  const d = u0.shape[0], r = u0.shape[1];
  if (r === 0) return new Float32Array(B * d);
  const y = Tensor.from(u0.gpu, await projectKeys(u0, K, B), [B, r], "f32", { name: "alphaedit.KU" });
  const p = await matmul(y, u0, { transB: true, outDtype: "f32" });
  const out = await p.read();
  y.dispose(), p.dispose();
  return out;
}

/**
 * AlphaEdit's adj [B, d] for keys K [B, d], the null-space basis U₀ [d, r] and the projected cache
 * G [r, r] (null for an empty cache), with ridge L2 > 0. r = 0 gives adj = 0 (nothing can be written).
 */
export async function alphaEditAdj(
  u0: Tensor,
  cacheG: Float32Array | null,
  K: Float32Array,
  B: number,
  l2: number,
): Promise<Float32Array> {
  if (!(l2 > 0)) throw new Error(`L2 must be > 0, got ${l2}`);
  const gpu = u0.gpu, d = u0.shape[0], r = u0.shape[1];
  if (r === 0 || B === 0) return new Float32Array(B * d);
  const yRows = await projectKeys(u0, K, B); // [B, r]
  const y = Tensor.from(gpu, yRows, [B, r], "f32", { name: "alphaedit.KU" });
  const g = cacheG
    ? Tensor.from(gpu, cacheG, [r, r], "f32", { name: "alphaedit.G" })
    : Tensor.zeros(gpu, [r, r], "f32");
  try {
    await matmul(y, y, { transA: true, out: g, accumulate: true });
    const factor = await choleskyFactor(g, { inPlace: true, damping: l2 });
    let sol: Float32Array;
    try {
      sol = await solveRows(factor, gpu, yRows, B, r); // [B, r]
    } finally {
      factor.dispose();
    }
    const s = Tensor.from(gpu, sol, [B, r], "f32", { name: "alphaedit.y" });
    const adj = await matmul(s, u0, { transB: true, outDtype: "f32" }); // [B, d]
    const out = await adj.read();
    s.dispose(), adj.dispose();
    return out;
  } finally {
    y.dispose(), g.dispose();
  }
}

/** G += (K U₀)ᵀ(K U₀) for the keys of a finished batch (AlphaEdit's cache, projected). */
export async function updateCache(
  u0: Tensor,
  cacheG: Float32Array | null,
  K: Float32Array,
  B: number,
): Promise<Float32Array> {
  const r = u0.shape[1];
  const y = await projectKeys(u0, K, B);
  const g = cacheG ? Float64Array.from(cacheG) : new Float64Array(r * r);
  for (let b = 0; b < B; b++) {
    const row = y.subarray(b * r, (b + 1) * r);
    for (let i = 0; i < r; i++) {
      const yi = row[i];
      if (yi === 0) continue;
      for (let j = 0; j < r; j++) g[i * r + j] += yi * row[j];
    }
  }
  return Float32Array.from(g);
}
