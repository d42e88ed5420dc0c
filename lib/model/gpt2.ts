/**
 * GPT-2 tensor names (`transformer.*` as save_pretrained writes them, or the hub's original unprefixed
 * names). Conv1D weights are [in, out]; c_attn fuses q|k|v along its output; the LM head is tied to wte.
 * @module
 */
import type { ModelConfig } from "./config.ts";
import { type ArchitectureSpec, type BlockSpec, pickPrefix } from "./architecture.ts";

/** Builds GPT-2's tensor map. */
export function gpt2Architecture(cfg: ModelConfig, names: Set<string>): ArchitectureSpec {
  const p = pickPrefix(names, ["transformer.", ""], "wte.weight");
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const h = `${p}h.${i}.`;
    const qkv = (index: number) => ({
      weight: `${h}attn.c_attn.weight`,
      bias: `${h}attn.c_attn.bias`,
      layout: "in_out" as const,
      part: { index, of: 3 },
    });
    blocks.push({
      ln1: { weight: `${h}ln_1.weight`, bias: `${h}ln_1.bias` },
      ln2: { weight: `${h}ln_2.weight`, bias: `${h}ln_2.bias` },
      q: qkv(0),
      k: qkv(1),
      v: qkv(2),
      o: { weight: `${h}attn.c_proj.weight`, bias: `${h}attn.c_proj.bias`, layout: "in_out" },
      mlpIn: { weight: `${h}mlp.c_fc.weight`, bias: `${h}mlp.c_fc.bias`, layout: "in_out" },
      mlpGate: null,
      mlpOut: { weight: `${h}mlp.c_proj.weight`, bias: `${h}mlp.c_proj.bias`, layout: "in_out" },
    });
  }
  const lm = names.has("lm_head.weight") && !cfg.tieWordEmbeddings ? "lm_head.weight" : `${p}wte.weight`;
  return {
    embed: `${p}wte.weight`,
    positions: `${p}wpe.weight`,
    blocks,
    finalNorm: { weight: `${p}ln_f.weight`, bias: `${p}ln_f.bias` },
    lmHead: { weight: lm, layout: "out_in" },
    rewriteModule: (i) => `${p}h.${i}.mlp.c_proj`,
  };
}
