/**
 * Qwen3 (`Qwen3Config`, `Qwen3Attention`): Llama with an explicit `head_dim` (default 128, need not be
 * hidden/heads), per-head RMSNorm `q_norm` / `k_norm` before rotary, optional `attention_bias`, a sliding
 * window only when `use_sliding_window`.
 * @module
 */
import type { LlamaLikeFamily } from "../llama_like.ts";

/** The Qwen3 family. */
export const QWEN3: LlamaLikeFamily = {
  modelType: "qwen3",
  qkvBias: { field: "attention_bias", default: false },
  oBias: { field: "attention_bias", default: false },
  mlpBias: false,
  qkNorm: true,
  slidingWindow: "per_layer",
  defaults: { maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6, headDim: 128 },
};
