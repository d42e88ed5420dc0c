/**
 * 7B-class config.json values for the random-weight models of random_model.ts (the GPU edit bench's shapes).
 * @module
 */

/**
 * HF config.json values of 7B-class models for {@linkcode randomModel} (the GPU edit bench's shapes):
 * Llama-2-7B, Llama-3-8B (vocab 128,256, d_ff 14,336, GQA 8 KV heads) and Qwen2.5-7B (d_ff 18,944, vocab
 * 152,064, 4 KV heads, q/k/v biases), as their hub config.json files have them.
 */
export const RANDOM_7B_CONFIGS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  "llama-2-7b": {
    model_type: "llama",
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    vocab_size: 32000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 4096,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  },
  "llama-3-8b": {
    model_type: "llama",
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 8192,
    rope_theta: 500000,
    tie_word_embeddings: false,
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: "bfloat16",
  },
  "qwen2.5-7b": {
    model_type: "qwen2",
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    vocab_size: 152064,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 131072,
    rope_theta: 1000000,
    use_sliding_window: false,
    sliding_window: 131072,
    max_window_layers: 28,
    tie_word_embeddings: false,
    bos_token_id: 151643,
    eos_token_id: 151643,
    torch_dtype: "bfloat16",
  },
};
