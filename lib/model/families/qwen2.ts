/**
 * Qwen2 / Qwen2.5 (`Qwen2Config`, `Qwen2Attention`): Llama with hard-coded biases on q/k/v (none on
 * o_proj), a sliding window only when `use_sliding_window` (on the layers from `max_window_layers` on),
 * tied embeddings for the small sizes.
 * @module
 */
import type { LlamaLikeFamily } from "../llama_like.ts";

/** The Qwen2 family. */
export const QWEN2: LlamaLikeFamily = {
  modelType: "qwen2",
  qkvBias: true,
  oBias: false,
  mlpBias: false,
  qkNorm: false,
  slidingWindow: "per_layer",
  defaults: { maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6, headDim: null },
};
