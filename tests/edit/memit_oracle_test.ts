/**
 * MEMIT against the PyTorch oracle in ../shared/models/<model>/memit_reference, stage by stage on the
 * oracle's batch of 4 requests (records 0–3), in f32:
 * token ids and lookups of every rewriting row, key template and bare prompt; target_init, every step of
 * the z optimisation, δ and z; per layer K (and every template key), cur_z, R, and — where ../shared ships
 * C_l (layer 0 of tiny-gpt2, layer 1 of tiny-llama) — C_l K, adj and ΔW; post-edit log-probs, top-10
 * logits and the success pattern. For the layer whose C is not shipped (it takes minutes to recompute),
 * the oracle's adj is written with keg's R, so the next layer and the post-edit scores still depend on
 * everything keg computed. Tolerances: the oracle README's suggestions for an f32 implementation
 * (≈10× the measured f32-vs-f64 error of the reference, and above its f32-solve error).
 */
import assert from "node:assert/strict";
import { computeVStar, type VStarResult } from "../../lib/edit/v_star.ts";
import { loadStatsFile } from "../../lib/edit/covariance.ts";
import { barePrompts, batchKeys, residualAt } from "../../lib/edit/memit_keys.ts";
import { memitAdj } from "../../lib/edit/memit_solve.ts";
import { applyFactors } from "../../lib/edit/memit.ts";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { sharedPath } from "../_util.ts";
import { type Json, relErr } from "./_oracle.ts";
import { loadMemitOracle, requestOf, scoreRecord } from "./_memit_oracle.ts";

const TOL = {
  targetInit: 1e-4,
  kTemplates: 5e-4,
  K: 5e-4,
  CK: 1e-3,
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

function check(label: string, got: ArrayLike<number>, want: Float32Array | undefined, tol: number): void {
  assert.ok(want, `${label}: missing in the oracle`);
  assert.equal(got.length, want.length, `${label}: length`);
  const e = relErr(got, want);
  assert.ok(e < tol, `${label}: max rel. error ${e.toExponential(3)} ≥ ${tol}`);
}

for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
  Deno.test(`MEMIT on ${name} matches the PyTorch oracle stage by stage (batch of 4, f32)`, async () => {
    const dir = sharedPath(`models/${name}`);
    const cf = sharedPath("data/datasets/counterfact-rome/counterfact.json");
    if (!dir || !cf) return;
    const s = await loadMemitOracle(dir, name, "f32", cf);
    const net = s.model.net, tok = s.model.tokenizer!;
    const run = s.oracle.runs.memit[0];
    const T = (n: string) => s.tensors.get(`memit.b0.${n}`);
    const groups: string[][] = s.oracle.context_templates;
    const layers: number[] = s.oracle.layers;
    assert.deepEqual(s.hp.layers, layers, "config layers");
    const zLayer = layers[layers.length - 1];
    const dm = net.config.hiddenSize, dff = net.config.intermediateSize;
    const requests = run.case_ids.map((id: number) => requestOf(s, id));
    const B = requests.length;
    try {
      // z per request
      const zs: VStarResult[] = [];
      for (const [i, req] of requests.entries()) {
        const o = run.requests[i];
        assert.deepEqual(tok.encode(" " + req.targetNew, { addBos: false }), o.target_new_ids, "target ids");
        const vs = await computeVStar(net, tok, req.prompt, req.subject, o.target_new_ids, groups.flat(), {
          layer: zLayer,
          factToken: "subject_last",
          steps: s.hp.base.vNumGradSteps,
          lr: s.hp.base.vLr,
          weightDecay: s.hp.base.vWeightDecay,
          clampNormFactor: s.hp.base.clampNormFactor,
          klFactor: s.hp.base.klFactor,
          lossBreak: s.hp.base.lossBreak,
          targetInitAt: "residual",
        });
        vs.rows.forEach((row, j) => {
          const w = o.rewriting_and_kl_prompts[j];
          assert.deepEqual(row.ids, w.ids, `request ${i} row ${j} ids`);
          assert.equal(row.lookup, w.lookup_idx, `request ${i} row ${j} lookup`);
          if (w.target_positions) assert.deepEqual(row.targetPositions, w.target_positions);
        });
        assert.equal(vs.steps.length, o.z_opt.n_forwards, `request ${i} forwards`);
        vs.steps.forEach((st, j) => {
          const w = o.z_opt.steps[j];
          assert.ok(
            Math.abs(st.nll - w.nll) <= TOL.nll * Math.abs(w.nll) + 1e-5,
            `z step ${j} nll ${st.nll} vs ${w.nll}`,
          );
          assert.ok(Math.abs(st.kl - w.kl) <= TOL.kl, `z step ${j} kl ${st.kl} vs ${w.kl}`);
          assert.ok(
            Math.abs(st.deltaNorm - w.delta_norm) <= TOL.deltaNorm * Math.abs(w.delta_norm) + 1e-5,
            `z step ${j} ‖δ‖ ${st.deltaNorm} vs ${w.delta_norm}`,
          );
        });
        zs.push(vs);
      }
      const rowsOf = (f: (v: VStarResult) => Float32Array) => {
        const out = new Float32Array(B * dm);
        zs.forEach((v, b) => out.set(f(v), b * dm));
        return out;
      };
      check("target_init", rowsOf((v) => v.targetInit), T("target_init"), TOL.targetInit);
      check("δ", rowsOf((v) => v.delta), T("delta"), TOL.delta);
      const z = rowsOf((v) => v.vStar);
      check("z", z, T("z"), TOL.z);

      const bare = barePrompts(tok, requests, "subject_last");
      bare.forEach((p, b) => {
        assert.deepEqual(p.ids, run.requests[b].bare_prompt_ids, `bare prompt ${b} ids`);
        assert.equal(p.lookup, run.requests[b].bare_lookup_idx, `bare prompt ${b} lookup`);
      });
      const stats = await loadStatsFile(s.model, s.cLayer, s.cFile);
      for (const [i, l] of layers.entries()) {
        const o = run.layers[String(l)];
        const keys = await batchKeys(net, tok, requests, groups, l, "subject_last");
        keys.prompts.forEach((p, j) => {
          assert.deepEqual(p.ids, o.key_templates[j].ids, `layer ${l} key template ${j} ids`);
          assert.equal(p.lookup, o.key_templates[j].lookup_idx, `layer ${l} key template ${j} lookup`);
        });
        check(`L${l} k_templates`, keys.kTemplates, T(`L${l}.k_templates`), TOL.kTemplates);
        check(`L${l} K`, keys.K, T(`L${l}.K`), TOL.K);
        const curZ = await residualAt(net, bare, zLayer);
        check(`L${l} cur_z`, curZ, T(`L${l}.cur_z`), TOL.curZ);
        const div = layers.length - i;
        assert.equal(div, o.resid_divisor);
        const resid = z.map((v, j) => (v - curZ[j]) / div);
        check(`L${l} resid`, resid, T(`L${l}.resid`), TOL.resid);
        let adj: Float32Array;
        if (l === s.cLayer) {
          // (C K)ᵀ checks keg's reading of the shipped statistics on real keys
          const kt = Tensor.from(stats.c.gpu, keys.K, [B, dff], "f32");
          const ck = await matmul(kt, stats.c, { transB: true, outDtype: "f32" });
          check(`L${l} CK`, await ck.read(), T(`L${l}.CK`), TOL.CK);
          kt.dispose(), ck.dispose();
          adj = await memitAdj(stats.c, keys.K, B, s.hp.mom2UpdateWeight);
          check(`L${l} adj`, adj, T(`L${l}.adj`), TOL.adj);
          if (l === 0) {
            // the full ΔW of layer 0 in the weight's layout: Conv1D [d_ff, d_model] = adjᵀ R; Linear = Rᵀ adj
            const dW = new Float64Array(dff * dm);
            const inOut = net.blocks[l].mlpOut.layout === "in_out";
            for (let b = 0; b < B; b++) {
              for (let p = 0; p < dff; p++) {
                const a = adj[b * dff + p];
                for (let q = 0; q < dm; q++) dW[inOut ? p * dm + q : q * dff + p] += a * resid[b * dm + q];
              }
            }
            check(`L${l} ΔW`, dW, T(`L${l}.dW`), TOL.dW);
          }
        } else {
          adj = T(`L${l}.adj`)!; // C_l is not shipped: write the oracle's adj with keg's R
        }
        const w = net.blocks[l].mlpOut;
        await applyFactors(w, resid, adj, B, 1);
      }
      stats.c.dispose();
      // post-edit: log-probs, top-10 of the bare prompt and the success pattern
      for (const id of run.case_ids) {
        const want = run.post[String(id)];
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
    } finally {
      await s.model.dispose();
    }
  });
}

/** The 10 largest next-token logits of a prompt. */
async function topTen(s: { model: Json }, text: string): Promise<{ ids: number[]; logits: number[] }> {
  const { padBatch } = await import("../../lib/model/transformer.ts");
  const tok = s.model.tokenizer;
  const res = await s.model.net.forward(padBatch([tok.encode(text)]), { logitRows: "last" });
  const l: Float32Array = await res.logits.read();
  res.logits.dispose();
  const idx = [...l.keys()].sort((a, b) => l[b] - l[a]).slice(0, 10);
  return { ids: idx, logits: idx.map((i) => l[i]) };
}
