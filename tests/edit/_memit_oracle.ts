/**
 * Loads a fact model with its MEMIT / AlphaEdit oracle (../shared/models/<model>/memit_reference) for
 * stage-by-stage comparisons, and post-edit scoring in the oracle's layout.
 * @module
 */
import { type LoadedModel, loadModel } from "../../lib/model/load.ts";
import type { Precision } from "../../lib/model/precision.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { loadMemitHparams, type MemitHparams } from "../../lib/edit/memit_hparams.ts";
import { scoreTargets } from "../../lib/model/score.ts";
import type { Json } from "./_oracle.ts";

/** A model, its oracle JSON and tensors, and its MEMIT config. */
export interface MemitOracle {
  model: LoadedModel;
  oracle: Json;
  tensors: Map<string, Float32Array>;
  hp: MemitHparams;
  counterfact: Json[];
  /** The layer whose C ships in ../rome_reference, and that file. */
  cLayer: number;
  cFile: string;
}

/** Loads everything for `name` ("tiny-gpt2-counterfact" | "tiny-llama-counterfact"). */
export async function loadMemitOracle(
  dir: string,
  name: string,
  precision: Precision,
  counterfactPath: string,
  alg: "MEMIT" | "AlphaEdit" = "MEMIT",
): Promise<MemitOracle> {
  const oracle = JSON.parse(await Deno.readTextFile(`${dir}/memit_reference/oracle.json`));
  const st = await openSafetensors(`${dir}/memit_reference/oracle.safetensors`);
  const tensors = new Map<string, Float32Array>();
  for (const n of st.names()) tensors.set(n, (await st.readFloat(n, "f32")).data);
  await st.close();
  const hp = await loadMemitHparams(new URL(`../../configs/${alg}/${name}.yaml`, import.meta.url).pathname);
  const model = await loadModel(dir, { precision, quiet: true });
  const counterfact = JSON.parse(await Deno.readTextFile(counterfactPath));
  const shipped = Object.entries(oracle.mom2 as Record<string, { file: string }>)
    .find(([, v]) => v.file.startsWith("shared/"))!;
  return {
    model,
    oracle,
    tensors,
    hp,
    counterfact,
    cLayer: Number(shipped[0]),
    cFile: `${dir}/rome_reference/${shipped[1].file.split("/").pop()}`,
  };
}

/** Post-edit log-probs per group (efficacy, paraphrase, neighborhood) and the bare prompt's top-10. */
export async function scoreRecord(s: MemitOracle, caseId: number): Promise<Json> {
  const rec = s.counterfact.find((c: Json) => c.case_id === caseId);
  const r = rec.requested_rewrite;
  const net = s.model.net, tok = s.model.tokenizer!;
  const groups: Record<string, string[]> = {
    efficacy: [r.prompt.replace("{}", () => r.subject)],
    paraphrase: rec.paraphrase_prompts,
    neighborhood: rec.neighborhood_prompts,
  };
  const newIds = tok.encode(" " + r.target_new.str, { addBos: false }),
    trueIds = tok.encode(" " + r.target_true.str, { addBos: false });
  const out: Json = {};
  for (const [g, prompts] of Object.entries(groups)) {
    const sc = await scoreTargets(net, tok, [...prompts, ...prompts], [
      ...prompts.map(() => newIds),
      ...prompts.map(() => trueIds),
    ]);
    out[g] = {
      lp_new: sc.slice(0, prompts.length).map((x) => x.meanLogProb),
      lp_true: sc.slice(prompts.length).map((x) => x.meanLogProb),
    };
  }
  return out;
}

/** The request of a CounterFact record in keg's form. */
export function requestOf(s: MemitOracle, caseId: number): {
  prompt: string;
  subject: string;
  targetNew: string;
  groundTruth: string;
  caseId: number;
} {
  const r = s.counterfact.find((c: Json) => c.case_id === caseId).requested_rewrite;
  return {
    prompt: r.prompt,
    subject: r.subject,
    targetNew: r.target_new.str,
    groundTruth: r.target_true.str,
    caseId,
  };
}
