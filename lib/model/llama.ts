/**
 * Llama / Mistral tensor names: RMSNorm, q/k/v/o projections (GQA through fewer k/v heads), a SiLU-gated
 * MLP (gate, up, down), and an LM head that may be tied to the embedding.
 * @module
 */
import type { ModelConfig } from "./config.ts";
import type { ArchitectureSpec, BlockSpec } from "./architecture.ts";

/** Builds the Llama/Mistral tensor map. */
export function llamaArchitecture(cfg: ModelConfig, names: Set<string>): ArchitectureSpec {
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const h = `model.layers.${i}.`;
    const lin = (n: string, bias: boolean) => ({
      weight: `${h}${n}.weight`,
      bias: bias ? `${h}${n}.bias` : undefined,
      layout: "out_in" as const,
    });
    const ab = cfg.attentionBias, mb = cfg.mlpBias;
    blocks.push({
      ln1: { weight: `${h}input_layernorm.weight` },
      ln2: { weight: `${h}post_attention_layernorm.weight` },
      q: lin("self_attn.q_proj", ab),
      k: lin("self_attn.k_proj", ab),
      v: lin("self_attn.v_proj", ab),
      o: lin("self_attn.o_proj", ab),
      mlpIn: lin("mlp.up_proj", mb),
      mlpGate: lin("mlp.gate_proj", mb),
      mlpOut: lin("mlp.down_proj", mb),
    });
  }
  const tied = cfg.tieWordEmbeddings || !names.has("lm_head.weight");
  return {
    embed: "model.embed_tokens.weight",
    positions: null,
    blocks,
    finalNorm: { weight: "model.norm.weight" },
    lmHead: { weight: tied ? "model.embed_tokens.weight" : "lm_head.weight", layout: "out_in" },
    rewriteModule: (i) => `model.layers.${i}.mlp.down_proj`,
  };
}
