/**
 * Runs the ROME stages on one oracle record so tests can compare every intermediate with
 * ../shared/models/<model>/rome_reference/oracle.json.
 * @module
 */
import { type LoadedModel, loadModel } from "../../lib/model/load.ts";
import type { Precision } from "../../lib/model/precision.ts";
import { loadHparams, type RomeHparams } from "../../lib/edit/hparams.ts";
import { loadStatsFile } from "../../lib/edit/covariance.ts";
import { computeKeyValues, type KeyValues } from "../../lib/edit/k_star.ts";
import { computeVStar, type VStarResult } from "../../lib/edit/v_star.ts";
import { applyRankOne, computeUpdate, type RankOne } from "../../lib/edit/update.ts";
import type { UpdateKind } from "../../lib/edit/hparams.ts";
import { type CholeskyFactor, choleskyFactor } from "../../lib/ops/cholesky.ts";
import { scoreTargets } from "../../lib/model/score.ts";

// deno-lint-ignore no-explicit-any
export type Json = any;

/** Max |a − b| / max |b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0, n = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    n = Math.max(n, Math.abs(b[i]));
  }
  return m / n;
}

/** A loaded model with its oracle, hparams and factor. */
export interface OracleSetup {
  model: LoadedModel;
  oracle: Json;
  hp: RomeHparams;
  factor: CholeskyFactor;
  counterfact: Json[];
}

/** Loads a fact model, its oracle and its covariance. */
export async function setupOracle(
  dir: string,
  name: string,
  precision: Precision,
  counterfactPath: string,
): Promise<OracleSetup> {
  const oracle = JSON.parse(await Deno.readTextFile(`${dir}/rome_reference/oracle.json`));
  const hp = await loadHparams(new URL(`../../configs/ROME/${name}.yaml`, import.meta.url).pathname);
  const model = await loadModel(dir, { precision, quiet: true });
  const stats = await loadStatsFile(model, hp.layers[0], `${dir}/rome_reference/${oracle.hparams.mom2_file}`);
  const factor = await choleskyFactor(stats.c);
  stats.c.dispose();
  const counterfact = JSON.parse(await Deno.readTextFile(counterfactPath));
  return { model, oracle, hp, factor, counterfact };
}

/** Everything one record's stages produce. */
export interface RecordRun {
  kv: KeyValues;
  vs: VStarResult;
  updates: Record<UpdateKind, RankOne>;
}

/** k*, v* and the three updates of oracle record `i`. */
export async function runRecord(s: OracleSetup, i: number, steps?: number): Promise<RecordRun> {
  const e = s.oracle.edits[i], r = e.request, L = s.hp.layers[0];
  const tok = s.model.tokenizer!;
  const kv = await computeKeyValues(
    s.model.net,
    tok,
    r.prompt,
    r.subject,
    s.oracle.context_templates,
    L,
    "subject_last",
  );
  const vs = await computeVStar(
    s.model.net,
    tok,
    r.prompt,
    r.subject,
    e.target_new_ids,
    s.oracle.context_templates,
    {
      layer: L,
      factToken: "subject_last",
      steps: steps ?? s.hp.vNumGradSteps,
      lr: s.hp.vLr,
      weightDecay: s.hp.vWeightDecay,
      clampNormFactor: s.hp.clampNormFactor,
      klFactor: s.hp.klFactor,
      lossBreak: s.hp.lossBreak,
    },
  );
  const updates = {} as Record<UpdateKind, RankOne>;
  for (const kind of ["rome", "r-rome", "p-rome"] as const) {
    updates[kind] = await computeUpdate(s.model.net.deviceOf(L), s.factor, {
      kind,
      ...kv,
      vStar: vs.vStar,
      delta: vs.delta,
    });
  }
  return { kv, vs, updates };
}

/** Post-edit log-probs (efficacy, paraphrase, neighborhood) and the bare prompt's top-10, after applying `kind`. */
export async function postEdit(s: OracleSetup, i: number, run: RecordRun, kind: UpdateKind): Promise<Json> {
  const e = s.oracle.edits[i], r = e.request;
  const rec = s.counterfact.find((c: Json) => c.case_id === e.case_id);
  const net = s.model.net, tok = s.model.tokenizer!;
  const w = net.blocks[s.hp.layers[0]].mlpOut;
  const original = await w.w.read();
  await applyRankOne(w, run.updates[kind]);
  const groups: Record<string, string[]> = {
    efficacy: [r.prompt.replace("{}", () => r.subject)],
    paraphrase: rec.paraphrase_prompts,
    neighborhood: rec.neighborhood_prompts,
  };
  const newIds = tok.encode(" " + r.target_new, { addBos: false }),
    trueIds = tok.encode(" " + r.target_true, { addBos: false });
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
  w.w.write(original);
  await w.w.gpu.sync();
  return out;
}
