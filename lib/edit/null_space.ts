/**
 * AlphaEdit's null space of the preserved keys: P = U₀U₀ᵀ, U₀ the eigenvectors of C = E[k kᵀ] whose
 * eigenvalues are below `nullspace_threshold` (the reference: the singular values of C, which equal its
 * eigenvalues as C is symmetric positive semi-definite). Computed once per layer from the unedited model.
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";

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
