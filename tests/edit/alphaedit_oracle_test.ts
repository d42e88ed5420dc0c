/**
 * AlphaEdit against the PyTorch oracle on tiny-llama-counterfact (d_ff = 448), two SEQUENTIAL batches of
 * 4 (records 0–3, then 4–7 on the edited model with batch 0's keys in the cache), f32:
 * P's rank from keg's GPU eigensolver and C's eigenvalues, (P K)ᵀ, per layer K, cur_z, R and adj, the keys
 * recomputed after each batch (K_after, which feed the cache), batch 1's target_init and first z steps on
 * the edited model, and the post-edit log-probs / success pattern / top-10 of all 8 records after batch 1
 * (and of records 0–3 after batch 0). z of every request is the oracle's downstream (z itself is checked
 * in memit_oracle_test.ts: the same procedure). Layer 0's C is not shipped; its P has rank 0 in the oracle,
 * so its adj (all zeros) is the oracle's. Also the null-space property on the real C: adj_b C adj_bᵀ <
 * threshold·‖adj_b‖² (the update barely moves the preserved keys).
 */
import assert from "node:assert/strict";
import { loadStatsFile } from "../../lib/edit/covariance.ts";
import { barePrompts, batchKeys, residualAt } from "../../lib/edit/memit_keys.ts";
import { alphaEditAdj, projectRows, updateCache } from "../../lib/edit/memit_solve.ts";
import { applyFactors } from "../../lib/edit/memit.ts";
import { nullSpaceOf } from "../../lib/edit/null_space.ts";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { sharedPath } from "../_util.ts";
import { check, checkPost, checkZ, loadMemitOracle, requestOf, TOL, zOf } from "./_memit_oracle.ts";

/** Per key b: (adj_b C adj_bᵀ) / ‖adj_b‖² — the energy the update puts on the statistics' keys. */
async function keyEnergy(c: Tensor, adj: Float32Array, B: number): Promise<number[]> {
  const d = c.shape[0];
  const a = Tensor.from(c.gpu, adj, [B, d], "f32");
  const ca = await matmul(a, c, { outDtype: "f32" });
  const x = await ca.read();
  a.dispose(), ca.dispose();
  return Array.from({ length: B }, (_, b) => {
    let num = 0, den = 0;
    for (let j = 0; j < d; j++) num += x[b * d + j] * adj[b * d + j], den += adj[b * d + j] ** 2;
    return den > 0 ? num / den : 0;
  });
}

Deno.test("AlphaEdit on tiny-llama-counterfact matches the PyTorch oracle (P rank, PK, adj, cache, 2 sequential batches)", async () => {
  const name = "tiny-llama-counterfact";
  const dir = sharedPath(`models/${name}`);
  const cf = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!dir || !cf) return;
  const s = await loadMemitOracle(dir, name, "f32", cf, "AlphaEdit");
  const net = s.model.net, tok = s.model.tokenizer!;
  const groups: string[][] = s.oracle.context_templates;
  const layers: number[] = s.oracle.layers;
  const zLayer = layers[layers.length - 1], dm = net.config.hiddenSize;
  const stats = await loadStatsFile(s.model, s.cLayer, s.cFile);
  try {
    const ns = await nullSpaceOf(stats.c, s.hp.nullspaceThreshold);
    const want = s.oracle.mom2[String(s.cLayer)];
    assert.equal(ns.rank, want.P_rank, `P rank of layer ${s.cLayer}`);
    // eigenvalues: |λ̂ − λ| ≤ 4·n·eps₃₂·‖C‖₂ (backward-stable f32), and the gap at the threshold is kept
    const ev = s.tensors.get(`C.L${s.cLayer}.eigvals`)!;
    const n = ev.length, tol = 4 * n * 2 ** -24 * ev[n - 1];
    ns.eigenvalues.forEach((l, i) => assert.ok(Math.abs(l - ev[i]) <= tol, `λ[${i}] ${l} vs ${ev[i]}`));
    let cache: Float32Array | null = null;
    for (const b of [0, 1]) {
      const run = s.oracle.runs.alphaedit[b];
      const T = (x: string) => s.tensors.get(`alphaedit.b${b}.${x}`);
      const requests = run.case_ids.map((id: number) => requestOf(s, id));
      const B = requests.length;
      // target_init on the model as it is (after batch 0 for batch 1); batch 1's request 0 for 3 forwards
      for (const [i, req] of requests.entries()) {
        const o = run.requests[i];
        const vs = await zOf(s, req, o.target_new_ids, b === 1 && i === 0 ? 3 : 1);
        checkZ(vs, o, `batch ${b} request ${i}`, false);
        check(
          `b${b} target_init[${i}]`,
          vs.targetInit,
          T("target_init")!.subarray(i * dm, (i + 1) * dm),
          TOL.targetInit,
        );
      }
      const z = T("z")!;
      const bare = barePrompts(tok, requests, "subject_last");
      for (const [i, l] of layers.entries()) {
        const keys = await batchKeys(net, tok, requests, groups, l, "subject_last");
        check(`b${b} L${l} k_templates`, keys.kTemplates, T(`L${l}.k_templates`), TOL.kTemplates);
        check(`b${b} L${l} K`, keys.K, T(`L${l}.K`), TOL.K);
        const curZ = await residualAt(net, bare, zLayer);
        check(`b${b} L${l} cur_z`, curZ, T(`L${l}.cur_z`), TOL.curZ);
        const resid = z.map((v, j) => (v - curZ[j]) / (layers.length - i));
        check(`b${b} L${l} resid`, resid, T(`L${l}.resid`), TOL.resid);
        let adj: Float32Array;
        if (l === s.cLayer) {
          check(`b${b} L${l} PK`, await projectRows(ns.u0, keys.K, B), T(`L${l}.PK`), TOL.PK);
          adj = await alphaEditAdj(ns.u0, cache, keys.K, B, s.hp.l2);
          check(`b${b} L${l} adj`, adj, T(`L${l}.adj`), TOL.adj);
          // null-space property on the real statistics: E‖ΔW k‖² over C's keys is Σ (adj_b C adj_bᵀ)·…,
          // and each adj_b has energy < threshold per unit norm (it lies where C has eigenvalues < threshold)
          const eA = await keyEnergy(stats.c, adj, B);
          eA.forEach((e, j) => assert.ok(e < s.hp.nullspaceThreshold, `AlphaEdit key ${j}: energy ${e}`));
        } else {
          adj = T(`L${l}.adj`)!;
          assert.ok(adj.every((x) => x === 0), "the oracle's layer-0 update is 0 (P rank 0)");
        }
        await applyFactors(net.blocks[l].mlpOut, resid, adj, B, 1);
      }
      // the cache of preserved keys: keys recomputed on the edited model
      for (const l of layers) {
        const after = await batchKeys(net, tok, requests, groups, l, "subject_last");
        check(`b${b} L${l} K_after`, after.K, T(`L${l}.K_after`), TOL.K);
        if (l === s.cLayer) cache = await updateCache(ns.u0, cache, after.K, B);
      }
      for (const id of Object.keys(run.post)) await checkPost(s, Number(id), run.post[id]);
    }
    ns.u0.dispose();
  } finally {
    stats.c.dispose();
    await s.model.dispose();
  }
});
