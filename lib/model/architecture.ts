/**
 * The shape of a transformer as keg runs it: which checkpoint tensors feed which part of each block.
 * One file per family (gpt2.ts, gptj.ts, llama.ts; the Llama-like families are descriptors in families/)
 * maps HF tensor names onto this.
 * @module
 */

/** Layout of a linear weight as stored: HF nn.Linear is [out, in]; GPT-2's Conv1D is [in, out]. */
export type Layout = "out_in" | "in_out";

/** A linear layer's tensors. `part` selects one of `parts` equal slices of a fused output (GPT-2 c_attn). */
export interface LinearSpec {
  weight: string;
  bias?: string;
  layout: Layout;
  part?: { index: number; of: number };
}

/** A norm layer's tensors (bias only for LayerNorm). */
export interface NormSpec {
  weight: string;
  bias?: string;
}

/** One transformer block. `ln2` is null for GPT-J's parallel block; `mlpGate` set for SiLU-gated MLPs. */
export interface BlockSpec {
  ln1: NormSpec;
  ln2: NormSpec | null;
  q: LinearSpec;
  k: LinearSpec;
  v: LinearSpec;
  o: LinearSpec;
  mlpIn: LinearSpec;
  mlpGate: LinearSpec | null;
  /** The MLP down-projection: ROME's rewrite module. Its input is the "key", its output the "value". */
  mlpOut: LinearSpec;
  /** Qwen3: per-head RMSNorm of q and of k (weight [head_dim]) before rotary. */
  qNorm?: NormSpec;
  kNorm?: NormSpec;
}

/** A whole model's tensor map. */
export interface ArchitectureSpec {
  embed: string;
  positions: string | null;
  blocks: BlockSpec[];
  finalNorm: NormSpec;
  /** The LM head; for tied embeddings its weight is the embedding table (layout out_in). */
  lmHead: LinearSpec;
  /** HF module path of block i's MLP down-projection (EasyEdit's rewrite_module_tmp filled in). */
  rewriteModule: (layer: number) => string;
}

/** Finds the tensor-name prefix in use: the first candidate for which `probe` exists. */
export function pickPrefix(names: Set<string>, candidates: string[], probe: string): string {
  for (const c of candidates) if (names.has(c + probe)) return c;
  return candidates[0];
}
