/**
 * The rank-one update: u = C⁻¹k / ‖C⁻¹k‖ (Cholesky solve, f32), r = (v* − v_ref) / (k·u), and
 * W += u rᵀ applied in the weight's own layout. Variants as the references name them:
 *
 * | update   | key k used for u | v_ref (subtracted)        | divisor      |
 * |----------|------------------|---------------------------|--------------|
 * | `rome`   | k* (templates)   | v of the bare prompt      | k_prompt · u |
 * | `r-rome` | k* (templates)   | v̄ (templates)             | k* · u       |
 * | `p-rome` | k_prompt         | v of the bare prompt      | k_prompt · u |
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CholeskyFactor } from "../ops/cholesky.ts";
import { outerUpdate } from "../ops/outer.ts";
import { linear } from "../ops/matmul.ts";
import type { Linear } from "../model/transformer.ts";
import type { UpdateKind } from "./hparams.ts";

/** Inputs of {@link computeUpdate}. */
export interface UpdateInputs {
  kind: UpdateKind;
  kStar: Float32Array;
  kPrompt: Float32Array;
  vBar: Float32Array;
  vPrompt: Float32Array;
  /** target_init + δ (the value the prompt should produce). */
  vStar: Float32Array;
  delta: Float32Array;
}

/** The rank-one factors of an edit and its diagnostics. */
export interface RankOne {
  /** Unit key-side vector [d_in]. */
  u: Float32Array;
  /** Value-side vector [d_out]; ΔW = u rᵀ in (in, out) terms. */
  r: Float32Array;
  /** k · u, the division factor. */
  divisionFactor: number;
  /** The subtracted value vector. */
  vRef: Float32Array;
  /** The key u was solved for. */
  key: Float32Array;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Solves C x = k with the cached factor (or x = k when C = I) and normalises. */
export async function solveKey(
  gpu: Gpu,
  factor: CholeskyFactor | null,
  k: Float32Array,
): Promise<Float32Array> {
  let x: Float32Array;
  if (factor) {
    const b = Tensor.from(gpu, k, [k.length], "f32", { name: "k" });
    const xt = await factor.solve(b);
    x = await xt.read();
    b.dispose(), xt.dispose();
  } else {
    x = k.slice();
  }
  const n = Math.sqrt(dot(x, x));
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`C⁻¹k has norm ${n}: the covariance solve failed`);
  return x.map((v) => v / n);
}

/** Computes u and r for a variant. All algebra in f32/f64 on the host (vectors are small). */
export async function computeUpdate(
  gpu: Gpu,
  factor: CholeskyFactor | null,
  i: UpdateInputs,
): Promise<RankOne> {
  const key = i.kind === "p-rome" ? i.kPrompt : i.kStar;
  const u = await solveKey(gpu, factor, key);
  let r: Float32Array, vRef: Float32Array, div: number;
  if (i.kind === "rome") {
    vRef = i.vPrompt, div = dot(i.kPrompt, u);
    r = i.vStar.map((v, j) => (v - vRef[j]) / div);
  } else if (i.kind === "r-rome") {
    vRef = i.vBar, div = dot(i.kStar, u);
    r = i.vStar.map((v, j) => (v - vRef[j]) / div);
  } else {
    vRef = i.vPrompt, div = dot(i.kPrompt, u);
    r = i.delta.map((d) => d / div);
  }
  return { u, r, divisionFactor: div, vRef, key };
}

/** W += α·u rᵀ in W's layout (α = 1 applies, −1 removes an edit). */
export async function applyRankOne(
  w: Linear,
  e: { u: Float32Array; r: Float32Array },
  alpha = 1,
): Promise<void> {
  const gpu = w.w.gpu;
  const u = Tensor.from(gpu, e.u, [e.u.length], "f32", { name: "u" });
  const r = Tensor.from(gpu, e.r, [e.r.length], "f32", { name: "r" });
  await outerUpdate(w.w, u, r, alpha, { layout: w.layout });
  await gpu.sync();
  u.dispose(), r.dispose();
}

/** ‖x‖₂. */
export function l2(x: ArrayLike<number>): number {
  return Math.sqrt(dot(x, x));
}

/** The key at which an update's closed form holds: k* for `r-rome`, the bare prompt's key otherwise. */
export function updateKey(kind: UpdateKind, kStar: Float32Array, kPrompt: Float32Array): Float32Array {
  return kind === "r-rome" ? kStar : kPrompt;
}

/**
 * ‖W′k + b − v*‖ / ‖v*‖ with the (updated) weight as stored: the rank-one update makes the rewrite module
 * map its key to v*, so this is rounding only (f32 weights ~1e-7, f16 ~1e-3). `key` is
 * {@link updateKey}'s: for `rome` and `p-rome` the closed form holds at the prompt's key (v_ref is that
 * key's value), for `r-rome` at k* (v_ref = v̄).
 */
export async function keyValueResidual(w: Linear, key: Float32Array, vStar: Float32Array): Promise<number> {
  const k = Tensor.from(w.w.gpu, key, [1, key.length], "f32", { name: "k" });
  const out = await linear(k, w.w, { layout: w.layout, bias: w.b, outDtype: "f32" });
  const y = await out.read();
  k.dispose(), out.dispose();
  let num = 0;
  for (let i = 0; i < y.length; i++) num += (y[i] - vStar[i]) ** 2;
  return Math.sqrt(num) / l2(vStar);
}
