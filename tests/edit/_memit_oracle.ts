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
import assert from "node:assert/strict";
import { computeVStar, type VStarResult } from "../../lib/edit/v_star.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { type Json, relErr } from "./_oracle.ts";

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

/** The oracle README's suggested tolerances for an f32 implementation. */
export const TOL = {
  targetInit: 1e-4,
  kTemplates: 5e-4,
  K: 5e-4,
  CK: 1e-3,
  PK: 5e-4,
  curZ: 1e-3,
  delta: 2e-3,
  z: 1e-3,
  resid: 2e-3,
  adj: 2e-3,
  dW: 2e-3,
  nll: 1e-3,
  kl: 5e-4,
  deltaNorm: 1e-3,
  top10: 1e-3,
  lp: 5e-3,
};

/** Max relative error of `got` against the oracle tensor below `tol`. */
export function check(
  label: string,
  got: ArrayLike<number>,
  want: Float32Array | undefined,
  tol: number,
): void {
  assert.ok(want, `${label}: missing in the oracle`);
  assert.equal(got.length, want.length, `${label}: length`);
  const e = relErr(got, want);
  assert.ok(e < tol, `${label}: max rel. error ${e.toExponential(3)} ≥ ${tol}`);
}

/** z of one request on the model as it is (target_init at the residual after the last edit layer). */
export function zOf(s: MemitOracle, req: { prompt: string; subject: string }, ids: number[], steps: number) {
  return computeVStar(
    s.model.net,
    s.model.tokenizer!,
    req.prompt,
    req.subject,
    ids,
    s.oracle.context_templates.flat(),
    {
      layer: s.hp.layers[s.hp.layers.length - 1],
      factToken: "subject_last",
      steps,
      lr: s.hp.base.vLr,
      weightDecay: s.hp.base.vWeightDecay,
      clampNormFactor: s.hp.base.clampNormFactor,
      klFactor: s.hp.base.klFactor,
      lossBreak: s.hp.base.lossBreak,
      targetInitAt: "residual",
    },
  );
}

/** Rows, lookups and the z trajectory against one oracle request (`full`: also the number of forwards). */
export function checkZ(vs: VStarResult, o: Json, label: string, full: boolean): void {
  vs.rows.forEach((row, j) => {
    const w = o.rewriting_and_kl_prompts[j];
    assert.deepEqual(row.ids, w.ids, `${label} row ${j} ids`);
    assert.equal(row.lookup, w.lookup_idx, `${label} row ${j} lookup`);
    if (w.target_positions) assert.deepEqual(row.targetPositions, w.target_positions);
  });
  if (full) assert.equal(vs.steps.length, o.z_opt.n_forwards, `${label} forwards`);
  vs.steps.forEach((st, j) => {
    const w = o.z_opt.steps[j];
    assert.ok(
      Math.abs(st.nll - w.nll) <= TOL.nll * Math.abs(w.nll) + 1e-5,
      `${label} z step ${j} nll ${st.nll} vs ${w.nll}`,
    );
    assert.ok(Math.abs(st.kl - w.kl) <= TOL.kl, `${label} z step ${j} kl ${st.kl} vs ${w.kl}`);
    assert.ok(
      Math.abs(st.deltaNorm - w.delta_norm) <= TOL.deltaNorm * Math.abs(w.delta_norm) + 1e-5,
      `${label} z step ${j} ‖δ‖ ${st.deltaNorm} vs ${w.delta_norm}`,
    );
  });
}

/** Post-edit log-probs, the success pattern and the bare prompt's top-10 of one record vs the oracle. */
export async function checkPost(s: MemitOracle, id: number, want: Json): Promise<void> {
  const got = await scoreRecord(s, id);
  for (const g of ["efficacy", "paraphrase", "neighborhood"]) {
    for (const k of ["lp_new", "lp_true"]) {
      const a: number[] = got[g][k], e: number[] = want.logprobs[g][k];
      a.forEach((x, j) => {
        assert.ok(
          Math.abs(x - e[j]) <= TOL.lp * Math.max(1, Math.abs(e[j])),
          `case ${id} ${g} ${k}[${j}]: ${x} vs ${e[j]}`,
        );
      });
    }
    const score = (lpN: number[], lpT: number[], neigh: boolean) =>
      lpN.reduce((acc, n, j) => acc + ((neigh ? lpT[j] > n : n > lpT[j]) ? 1 : 0), 0) / lpN.length;
    const key = g === "efficacy"
      ? "efficacy_score"
      : g === "paraphrase"
      ? "paraphrase_score"
      : "neighborhood_score";
    assert.equal(
      score(got[g].lp_new, got[g].lp_true, g === "neighborhood"),
      want.metrics[key],
      `case ${id} ${key}`,
    );
  }
  const req = requestOf(s, id);
  const top = await topTen(s, req.prompt.replace("{}", () => req.subject));
  assert.deepEqual(top.ids, want.top10_ids, `case ${id} top-10 ids`);
  check(`case ${id} top-10 logits`, top.logits, Float32Array.from(want.top10_logits), TOL.top10);
}

/** The 10 largest next-token logits of a prompt. */
async function topTen(s: MemitOracle, text: string): Promise<{ ids: number[]; logits: number[] }> {
  const tok = s.model.tokenizer!;
  const res = await s.model.net.forward(padBatch([tok.encode(text)]), { logitRows: "last" });
  const l: Float32Array = await res.logits.read();
  res.logits.dispose();
  const idx = [...l.keys()].sort((a, b) => l[b] - l[a]).slice(0, 10);
  return { ids: idx, logits: idx.map((i) => l[i]) };
}
