/**
 * Llama-like tensor names (Llama, Mistral, Qwen2, Qwen3; see llama_like.ts and families/): RMSNorm,
 * q/k/v/o projections (GQA through fewer k/v heads; biases per the family's flags), optional per-head
 * q/k norms, a SiLU-gated MLP (gate, up, down), and an LM head that may be tied to the embedding.
 * @module
 */
import type { ModelConfig } from "./config.ts";
import type { ArchitectureSpec, BlockSpec, LinearSpec } from "./architecture.ts";
import { familyNames } from "./llama_like.ts";
import { LLAMA, LLAMA_LIKE_FAMILIES } from "./families/mod.ts";

/** Builds the tensor map of a Llama-like model. */
export function llamaArchitecture(cfg: ModelConfig, names: Set<string>): ArchitectureSpec {
  const n = familyNames(LLAMA_LIKE_FAMILIES[cfg.modelType] ?? LLAMA);
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const h = n.layerPrefix(i);
    const lin = (name: string, bias: boolean): LinearSpec => ({
      weight: `${h}${name}.weight`,
      bias: bias ? `${h}${name}.bias` : undefined,
      layout: "out_in",
    });
    const ab = cfg.attentionBias, ob = cfg.attentionOutBias ?? ab, mb = cfg.mlpBias;
    const block: BlockSpec = {
      ln1: { weight: `${h}${n.inputNorm}.weight` },
      ln2: { weight: `${h}${n.postAttentionNorm}.weight` },
      q: lin(n.q, ab),
      k: lin(n.k, ab),
      v: lin(n.v, ab),
      o: lin(n.o, ob),
      mlpIn: lin(n.up, mb),
      mlpGate: lin(n.gate, mb),
      mlpOut: lin(n.down, mb),
    };
    if (cfg.qkNorm) {
      block.qNorm = { weight: `${h}${n.qNorm}.weight` };
      block.kNorm = { weight: `${h}${n.kNorm}.weight` };
    }
    blocks.push(block);
  }
  const tied = cfg.tieWordEmbeddings || !names.has(n.lmHead);
  const down = n.down;
  return {
    embed: n.embed,
    positions: null,
    blocks,
    finalNorm: { weight: n.finalNorm },
    lmHead: { weight: tied ? n.embed : n.lmHead, layout: "out_in" },
    rewriteModule: (i) => `${n.layerPrefix(i)}${down}`,
  };
}
