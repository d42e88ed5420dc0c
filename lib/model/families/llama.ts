/**
 * Llama (1, 2, 3.x; `LlamaConfig`): optional `attention_bias` on q/k/v/o and `mlp_bias`, no sliding
 * window, `rope_scaling` read by the config parser.
 * @module
 */
import type { LlamaLikeFamily } from "../llama_like.ts";

/** The Llama family. */
export const LLAMA: LlamaLikeFamily = {
  modelType: "llama",
  qkvBias: { field: "attention_bias", default: false },
  oBias: { field: "attention_bias", default: false },
  mlpBias: { field: "mlp_bias", default: false },
  qkNorm: false,
  slidingWindow: "none",
  defaults: { maxPositions: 2048, ropeTheta: 10000, rmsNormEps: 1e-6, headDim: null },
};
