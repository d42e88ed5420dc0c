/**
 * Mistral (`MistralConfig`): Llama with `sliding_window` on every layer when set; no MLP bias.
 * @module
 */
import type { LlamaLikeFamily } from "../llama_like.ts";

/** The Mistral family. */
export const MISTRAL: LlamaLikeFamily = {
  modelType: "mistral",
  qkvBias: { field: "attention_bias", default: false },
  oBias: { field: "attention_bias", default: false },
  mlpBias: false,
  qkNorm: false,
  slidingWindow: "all",
  defaults: { maxPositions: 4096 * 32, ropeTheta: 10000, rmsNormEps: 1e-6, headDim: null },
};
