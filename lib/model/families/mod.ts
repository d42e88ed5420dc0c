/**
 * The registry of Llama-like families (one descriptor file each).
 * @module
 */
import type { LlamaLikeFamily } from "../llama_like.ts";
import { LLAMA } from "./llama.ts";
import { MISTRAL } from "./mistral.ts";
import { QWEN2 } from "./qwen2.ts";
import { QWEN3 } from "./qwen3.ts";

export { LLAMA, MISTRAL, QWEN2, QWEN3 };

/** Every Llama-like family by `model_type`. */
export const LLAMA_LIKE_FAMILIES: Readonly<Record<string, LlamaLikeFamily>> = {
  llama: LLAMA,
  mistral: MISTRAL,
  qwen2: QWEN2,
  qwen3: QWEN3,
};
