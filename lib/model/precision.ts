/**
 * Precision modes of a model run.
 *
 * - `f32`: weights and activations stored in f32.
 * - `f16`: weights and activations stored in f16 (math and accumulation in f32 inside every kernel).
 * - `mixed`: weights stored in f16 (half the memory), activations, the residual stream and logits in f32.
 *
 * In every mode the edit algebra (δ, Adam state, k*, u, C and its factor, ΔW) stays f32.
 * @module
 */
import type { DType } from "../gpu/dtype.ts";

/** A precision mode. */
export type Precision = "f32" | "f16" | "mixed";

/** All precision modes, in the order benches report them. */
export const PRECISIONS: readonly Precision[] = ["f32", "f16", "mixed"];

/** Storage type of weights in a mode. */
export function weightDtype(p: Precision): DType {
  return p === "f32" ? "f32" : "f16";
}

/** Storage type of activations (residual stream, norms, attention, MLP hidden) in a mode. */
export function activationDtype(p: Precision): DType {
  return p === "f16" ? "f16" : "f32";
}

/** Parses a precision name, with a clear error. */
export function parsePrecision(value: string, where = "precision"): Precision {
  if (value === "f32" || value === "f16" || value === "mixed") return value;
  throw new Error(`${where}: expected f32, f16 or mixed, got ${JSON.stringify(value)}`);
}
