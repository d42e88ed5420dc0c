/**
 * AlphaEdit's null space of the preserved keys: P = U₀U₀ᵀ, U₀ the eigenvectors of C = E[k kᵀ] whose
 * eigenvalues are below `nullspace_threshold` (the reference: the singular values of C, which equal its
 * eigenvalues as C is symmetric positive semi-definite). Computed once per layer from the unedited model.
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import { type EigenOptions, selectColumns, symmetricEigen } from "../ops/eigen.ts";

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

/**
 * The null space of C (f32 [d, d] on its device): eigenvectors of eigenvalues < threshold, by the GPU
 * Jacobi eigensolver (lib/ops/eigen.ts). rank 0 is allowed here (that layer's ΔW is then 0).
 */
export async function nullSpaceOf(c: Tensor, threshold: number, opts: EigenOptions = {}): Promise<NullSpace> {
  if (!(threshold > 0)) throw new Error(`nullspace_threshold must be > 0, got ${threshold}`);
  const eig = await symmetricEigen(c, opts);
  let rank = 0;
  while (rank < eig.values.length && eig.values[rank] < threshold) rank++;
  const u0 = await selectColumns(eig.vectors, Uint32Array.from({ length: rank }, (_, i) => i));
  eig.vectors.dispose();
  return { u0, rank, eigenvalues: eig.values, threshold };
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
