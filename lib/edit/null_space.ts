/**
 * AlphaEdit's null space of the preserved keys: P = U₀U₀ᵀ, U₀ the eigenvectors of C = E[k kᵀ] whose
 * eigenvalues are below `nullspace_threshold` (the reference: the singular values of C, which equal its
 * eigenvalues as C is symmetric positive semi-definite). Computed once per layer from the unedited model.
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import { eigenReference } from "../ops/eigen_host.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../model/safetensors.ts";
import { cacheDir, sha256Hex } from "../util/fs.ts";
import type { Stats } from "./covariance.ts";
import { type EigenOptions, type EigenResult, selectColumns, symmetricEigen } from "../ops/eigen.ts";

/** The null-space basis of one layer. */
export interface NullSpace {
  /** U₀ [d, r] f32, orthonormal columns (on the layer's device). */
  u0: Tensor;
  /** r = rank of P. */
  rank: number;
  /** All eigenvalues of C, ascending. */
  eigenvalues: Float32Array;
  /** The threshold used. */
  threshold: number;
}

/** Options of {@link nullSpaceOf}. */
export interface NullSpaceOptions extends EigenOptions {
  /**
   * Rayleigh–Ritz refinement in f64 on the host of the eigenvectors with eigenvalues in
   * [threshold/4, 4·threshold] (default: when d ≤ 4096). An f32 eigensolver mixes eigenvectors whose
   * eigenvalues are closer than ≈ eps₃₂·‖C‖; around the threshold they are often 1e-4 apart, and the
   * refinement separates them against C itself in f64 (cost 2·d²·k for k vectors in the window).
   */
  refine?: boolean;
  /** A decomposition of C already computed by symmetricEigen (its vectors are consumed): not redone. */
  eigen?: EigenResult;
}

/**
 * The null space of C (f32 [d, d] on its device): eigenvectors of eigenvalues < threshold, by the GPU
 * Jacobi eigensolver (lib/ops/eigen.ts) and the refinement above. rank 0 is allowed (that layer's ΔW = 0).
 */
export async function nullSpaceOf(
  c: Tensor,
  threshold: number,
  opts: NullSpaceOptions = {},
): Promise<NullSpace> {
  if (!(threshold > 0)) throw new Error(`nullspace_threshold must be > 0, got ${threshold}`);
  const eig = opts.eigen ?? await symmetricEigen(c, opts);
  const d = eig.values.length;
  const values = eig.values;
  let lo = 0;
  while (lo < d && values[lo] < threshold / 4) lo++;
  let hi = lo;
  while (hi < d && values[hi] <= threshold * 4) hi++;
  const refine = (opts.refine ?? d <= 4096) && hi > lo;
  if (!refine) {
    let rank = 0;
    while (rank < d && values[rank] < threshold) rank++;
    const u0 = await selectColumns(eig.vectors, Uint32Array.from({ length: rank }, (_, i) => i));
    eig.vectors.dispose();
    return { u0, rank, eigenvalues: values, threshold };
  }
  const V = await eig.vectors.read();
  eig.vectors.dispose();
  const C = await c.read();
  const k = hi - lo;
  // Q = the window's vectors, orthonormalised (modified Gram–Schmidt, f64)
  const Q = new Float64Array(d * k);
  for (let j = 0; j < k; j++) {
    for (let i = 0; i < d; i++) Q[i * k + j] = V[i * d + lo + j];
    for (let pass = 0; pass < 2; pass++) {
      for (let m = 0; m < j; m++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += Q[i * k + m] * Q[i * k + j];
        for (let i = 0; i < d; i++) Q[i * k + j] -= dot * Q[i * k + m];
      }
      let n2 = 0;
      for (let i = 0; i < d; i++) n2 += Q[i * k + j] ** 2;
      const n = Math.sqrt(n2);
      for (let i = 0; i < d; i++) Q[i * k + j] /= n;
    }
  }
  const CQ = new Float64Array(d * k);
  for (let i = 0; i < d; i++) {
    for (let t = 0; t < d; t++) {
      const cit = C[i * d + t];
      if (cit === 0) continue;
      for (let j = 0; j < k; j++) CQ[i * k + j] += cit * Q[t * k + j];
    }
  }
  const H = new Float64Array(k * k);
  for (let i = 0; i < d; i++) {
    for (let a = 0; a < k; a++) {
      const q = Q[i * k + a];
      for (let b = 0; b < k; b++) H[a * k + b] += q * CQ[i * k + b];
    }
  }
  for (let a = 0; a < k; a++) {
    for (let b = a + 1; b < k; b++) H[a * k + b] = H[b * k + a] = (H[a * k + b] + H[b * k + a]) / 2;
  }
  const small = eigenReference(H, k);
  let inWindow = 0;
  while (inWindow < k && small.values[inWindow] < threshold) inWindow++;
  const rank = lo + inWindow;
  const u = new Float32Array(d * rank);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < lo; j++) u[i * rank + j] = V[i * d + j];
    for (let j = 0; j < inWindow; j++) {
      let s = 0;
      for (let a = 0; a < k; a++) s += Q[i * k + a] * small.vectors[a * k + j];
      u[i * rank + lo + j] = s;
    }
  }
  const refined = Float32Array.from(values);
  for (let j = 0; j < k; j++) refined[lo + j] = small.values[j];
  const u0 = rank
    ? Tensor.from(c.gpu, u, [d, rank], "f32", { name: "nullspace.U0" })
    : Tensor.empty(c.gpu, [d, 0], "f32", { name: "nullspace.U0" });
  return { u0, rank, eigenvalues: refined, threshold };
}

/** Checks the ranks of the edited layers: all zero is an error naming the fix; returns warnings. */
export function checkNullRanks(
  ranks: Map<number, number>,
  d: number,
  threshold: number,
  source: string,
): string[] {
  const all = [...ranks.entries()];
  if (all.length && all.every(([, r]) => r === 0)) {
    throw new Error(
      `${source}: the covariance of layer(s) ${all.map(([l]) => l).join(", ")} has no eigenvalue below ` +
        `nullspace_threshold = ${threshold}: the null space is empty and AlphaEdit can write nothing; raise ` +
        `nullspace_threshold (its eigenvalues are listed by the null space) or edit other layers`,
    );
  }
  const out: string[] = [];
  for (const [l, r] of all) {
    if (r === 0) out.push(`layer ${l}: empty null space (no eigenvalue of C below ${threshold}): ΔW = 0`);
    if (r === d) out.push(`layer ${l}: every eigenvalue of C is below ${threshold}: P = I preserves nothing`);
  }
  return out;
}

/**
 * {@link nullSpaceOf} cached on disk (`~/.cache/keg/nullspace`), keyed by the statistics' file (path, size,
 * modification time) and the threshold: U₀ and the eigenvalues in a safetensors file (write-then-rename).
 */
export async function cachedNullSpace(
  stats: Stats,
  threshold: number,
): Promise<NullSpace & { cached: boolean }> {
  let id = stats.path;
  try {
    const st = await Deno.stat(stats.path);
    id += `|${st.size}|${st.mtime?.getTime()}`;
  } catch { /* not a file: path only */ }
  const key = (await sha256Hex(JSON.stringify([id, stats.count, threshold, "jacobi-v1"]))).slice(0, 32);
  const path = `${await cacheDir("nullspace")}/${key}.safetensors`;
  const gpu = stats.c.gpu, d = stats.c.shape[0];
  try {
    const f = await openSafetensors(path);
    try {
      const ev = (await f.readFloat("eigenvalues", "f32")).data;
      const rank = Number(f.metadata.rank);
      const u = rank ? (await f.readFloat("u0", "f32")).data : new Float32Array(0);
      const u0 = rank ? Tensor.from(gpu, u, [d, rank], "f32") : Tensor.empty(gpu, [d, 0], "f32");
      return { u0, rank, eigenvalues: ev, threshold, cached: true };
    } finally {
      await f.close();
    }
  } catch { /* not cached */ }
  const ns = await nullSpaceOf(stats.c, threshold);
  const tensors: TensorToWrite[] = [{ name: "eigenvalues", dtype: "F32", shape: [d], data: ns.eigenvalues }];
  if (ns.rank) tensors.push({ name: "u0", dtype: "F32", shape: [d, ns.rank], data: await ns.u0.read() });
  await writeSafetensors(path, tensors, {
    rank: String(ns.rank),
    threshold: String(threshold),
    stats: stats.path,
  });
  return { ...ns, cached: false };
}
