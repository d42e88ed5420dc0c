/**
 * Llama-like families as data. Llama, Mistral, Qwen2 and Qwen3 share one block (RMSNorm, rotary q/k,
 * GQA attention, SiLU-gated MLP) and differ only in a few wiring flags and config defaults; each family is
 * one small descriptor in `families/`. Adding the next Llama-like family is one more descriptor (and an
 * entry in {@linkcode LLAMA_LIKE_FAMILIES}) as long as its block is this one.
 * @module
 */

/** A wiring flag: fixed for the family, or read from a boolean config field (with its HF default). */
export type ConfigFlag = boolean | { field: string; default: boolean };

/** Tensor names of a Llama-like checkpoint, relative to `layerPrefix(i)` unless noted. */
export interface LlamaLikeNames {
  /** Token embedding (absolute name). */
  embed: string;
  /** Final norm (absolute name). */
  finalNorm: string;
  /** Untied LM head (absolute name). */
  lmHead: string;
  /** Prefix of block i's tensors. */
  layerPrefix: (i: number) => string;
  inputNorm: string;
  postAttentionNorm: string;
  q: string;
  k: string;
  v: string;
  o: string;
  /** Per-head norms of q and k (families with `qkNorm`). */
  qNorm: string;
  kNorm: string;
  gate: string;
  up: string;
  down: string;
}

/** HF's `LlamaForCausalLM` names, shared by Mistral, Qwen2 and Qwen3. */
export const LLAMA_NAMES: LlamaLikeNames = {
  embed: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
  layerPrefix: (i) => `model.layers.${i}.`,
  inputNorm: "input_layernorm",
  postAttentionNorm: "post_attention_layernorm",
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  qNorm: "self_attn.q_norm",
  kNorm: "self_attn.k_norm",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
};

/** One Llama-like family: its `model_type`, wiring flags and config defaults. */
export interface LlamaLikeFamily {
  /** HF `model_type`. */
  modelType: string;
  /** Biases on q_proj, k_proj and v_proj. */
  qkvBias: ConfigFlag;
  /** Bias on o_proj. */
  oBias: ConfigFlag;
  /** Biases on gate/up/down. */
  mlpBias: ConfigFlag;
  /** Per-head RMSNorm of q and k (weight [head_dim]) before rotary (Qwen3). */
  qkNorm: boolean;
  /**
   * How `sliding_window` is read: `none` (ignored), `all` (Mistral: every layer when set), `per_layer`
   * (Qwen2/Qwen3: only when `use_sliding_window`, on the layers `layer_types` or `max_window_layers` pick).
   */
  slidingWindow: "none" | "all" | "per_layer";
  /** HF config defaults for absent fields; `headDim` null means hidden_size / num_attention_heads. */
  defaults: { maxPositions: number; ropeTheta: number; rmsNormEps: number; headDim: number | null };
  /** Tensor names (default {@linkcode LLAMA_NAMES}). */
  names?: Partial<LlamaLikeNames>;
}

/** The tensor names of a family (its overrides on top of Llama's). */
export function familyNames(f: LlamaLikeFamily): LlamaLikeNames {
  return { ...LLAMA_NAMES, ...f.names };
}
