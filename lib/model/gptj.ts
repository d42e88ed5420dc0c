/**
 * GPT-J tensor names: separate q/k/v/out projections without bias, one ln_1 feeding attention and MLP in
 * parallel, fc_in/fc_out with bias, an untied LM head with bias.
 * @module
 */
import type { ModelConfig } from "./config.ts";
import type { ArchitectureSpec, BlockSpec } from "./architecture.ts";

/** Builds GPT-J's tensor map. */
export function gptjArchitecture(cfg: ModelConfig, _names: Set<string>): ArchitectureSpec {
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const h = `transformer.h.${i}.`;
    const lin = (n: string) => ({ weight: `${h}attn.${n}.weight`, layout: "out_in" as const });
    blocks.push({
      ln1: { weight: `${h}ln_1.weight`, bias: `${h}ln_1.bias` },
      ln2: null,
      q: lin("q_proj"),
      k: lin("k_proj"),
      v: lin("v_proj"),
      o: lin("out_proj"),
      mlpIn: { weight: `${h}mlp.fc_in.weight`, bias: `${h}mlp.fc_in.bias`, layout: "out_in" },
      mlpGate: null,
      mlpOut: { weight: `${h}mlp.fc_out.weight`, bias: `${h}mlp.fc_out.bias`, layout: "out_in" },
    });
  }
  return {
    embed: "transformer.wte.weight",
    positions: null,
    blocks,
    finalNorm: { weight: "transformer.ln_f.weight", bias: "transformer.ln_f.bias" },
    lmHead: {
      weight: cfg.tieWordEmbeddings ? "transformer.wte.weight" : "lm_head.weight",
      bias: cfg.lmHeadBias ? "lm_head.bias" : undefined,
      layout: "out_in",
    },
    rewriteModule: (i) => `transformer.h.${i}.mlp.fc_out`,
  };
}
