/**
 * Optimiser steps on the GPU (shaders/optim.wgsl): Adam on ROME's δ with its weight-decay gradient and
 * norm clamp, writing the step's loss parts so that the v* loop reads back one small vector per step.
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { Gpu } from "../gpu/device.ts";
import { words } from "./_chunks.ts";

/** Hyper-parameters of {@link adamDelta}. */
export interface AdamDeltaSettings {
  /** v_lr. */
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** weight_decay / ‖target_init‖² (the loss term is wdScale·‖δ‖). */
  wdScale: number;
  /** clamp_norm_factor · ‖target_init‖. */
  maxNorm: number;
  /** kl_factor (scales the reported kl). */
  klFactor: number;
}

/** Words of {@link AdamDeltaState.stats} after a step. */
export const ADAM_STATS = { nll: 0, kl: 1, normBefore: 2, normAfter: 3, badGrad: 4 } as const;

/** The device-resident state of one δ optimisation. */
export interface AdamDeltaState {
  /** δ, f32 `[d]`. */
  delta: Tensor;
  /** Adam m, v, δ before the last step, t and the bias-correction table: f32 `[3d + 1 + 2·steps]`. */
  state: Tensor;
  /** Steps the table covers (later steps reuse the last entry). */
  steps: number;
  /** Loss parts of the last step, f32 `[5]` (see {@link ADAM_STATS}). */
  stats: Tensor;
}

/**
 * Zero δ, zero Adam moments, t = 0, and the per-step bias corrections (lr/(1 − β1^t), √(1 − β2^t)) for
 * t = 1…steps, computed in f64 as torch does.
 */
export function adamDeltaState(gpu: Gpu, d: number, s: AdamDeltaSettings, steps: number): AdamDeltaState {
  const b1 = s.beta1 ?? 0.9, b2 = s.beta2 ?? 0.999;
  const host = new Float32Array(3 * d + 1 + 2 * Math.max(1, steps));
  for (let t = 1; t <= Math.max(1, steps); t++) {
    host[3 * d + 1 + 2 * (t - 1)] = s.lr / (1 - b1 ** t);
    host[3 * d + 2 + 2 * (t - 1)] = Math.sqrt(1 - b2 ** t);
  }
  return {
    delta: Tensor.zeros(gpu, [d], "f32", { name: "delta" }),
    state: Tensor.from(gpu, host, [host.length], "f32", { name: "adam.state" }),
    stats: Tensor.zeros(gpu, [5], "f32", { name: "adam.stats" }),
    steps: Math.max(1, steps),
  };
}

/**
 * One step: stats ← (Σ_r w_r·nll_r, klFactor·kl, ‖δ‖, –, bad); g = grad + wdScale·δ/‖δ‖ (0 at δ = 0);
 * Adam (torch semantics: δ −= lr/(1 − β1^t)·m/(√v/√(1 − β2^t) + eps); the settings must be those the
 * state was made with); δ ← δ·min(1, maxNorm/‖δ‖); stats[3] ← ‖δ‖ after.
 * The δ before the step is kept in the state (so a caller that stops on this step's loss can undo it).
 */
export async function adamDelta(
  s: AdamDeltaSettings,
  st: AdamDeltaState,
  grad: Tensor,
  loss: { nll: Tensor; weights: Tensor; kl: Tensor; bad: Tensor },
): Promise<void> {
  const op = "adamDelta";
  const d = st.delta.size;
  const gpu = st.delta.gpu;
  if (grad.size !== d || st.state.size !== 3 * d + 1 + 2 * st.steps || st.stats.size < 5) {
    throw new GpuError(op, `shapes: grad [${grad.shape}], delta [${d}], state [${st.state.shape}]`);
  }
  if (loss.nll.size !== loss.weights.size) {
    throw new GpuError(op, `nll has ${loss.nll.size} rows, weights ${loss.weights.size}`);
  }
  for (const t of [grad, loss.nll, loss.weights, loss.kl, loss.bad, st.state, st.stats]) {
    if (t.gpu !== gpu) throw new GpuError(op, `${t.name} lives on another device`);
    if (t.dtype !== "f32") throw new GpuError(op, `${t.name} must be f32`);
  }
  const pipe = await gpu.pipeline({ family: "optim", entry: "adam_delta" });
  const b1 = s.beta1 ?? 0.9, b2 = s.beta2 ?? 0.999;
  gpu.dispatch(
    op,
    pipe,
    [
      grad.buffer,
      loss.nll.buffer,
      loss.weights.buffer,
      loss.kl.buffer,
      loss.bad.buffer,
      st.delta.buffer,
      st.state.buffer,
      st.stats.buffer,
    ],
    [1],
    words(
      d,
      loss.nll.size,
      st.steps,
      0,
      { f: b1 },
      { f: b2 },
      { f: 1 - b1 },
      { f: 1 - b2 },
      { f: s.eps ?? 1e-8 },
      { f: s.wdScale },
      { f: s.maxNorm },
      { f: s.klFactor },
    ),
  );
}
