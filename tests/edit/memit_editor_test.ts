/**
 * MemitEditor end to end on tiny-gpt2-counterfact with synthetic statistics C = I (so no corpus pass):
 * the exact least-squares property (λ → 0 ⇒ ΔW K = R for the batch keys, with the deviation the formula
 * predicts), saving through AppliedEdit, reload and exact revert, and bad input.
 */
import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { loadModel } from "../../lib/model/load.ts";
import { applyMemitOverrides, loadMemitHparams, parseMemitHparams } from "../../lib/edit/memit_hparams.ts";
import { checkConflicts, MemitEditor } from "../../lib/edit/memit.ts";
import { applyEdits } from "../../lib/edit/applied.ts";
import { readEdits, saveEdits } from "../../lib/edit/edits_io.ts";
import type { Stats } from "../../lib/edit/covariance.ts";
import { HparamsError } from "../../lib/edit/hparams.ts";
import { sharedPath } from "../_util.ts";

const CONFIG = new URL("../../configs/MEMIT/tiny-gpt2-counterfact.yaml", import.meta.url).pathname;
const REQUESTS = [
  { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" },
  { prompt: "{} is located in", subject: "Shanghai", targetNew: "Dresden" },
  { prompt: "The mother tongue of {} is", subject: "Danielle Darrieux", targetNew: "English" },
];

Deno.test("MEMIT, one layer, λ → 0: ΔW K = R·G(λ + G)⁻¹ → R for the batch keys; save, reload, revert", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const model = await loadModel(dir, { quiet: true });
  const d = model.config.intermediateSize;
  const identity = (): Promise<Stats> => {
    const c = new Float32Array(d * d);
    for (let i = 0; i < d; i++) c[i * d + i] = 1;
    return Promise.resolve({
      c: Tensor.from(model.net.deviceOf(1), c, [d, d], "f32"),
      count: 1,
      source: "file",
      path: "identity",
    });
  };
  const w = model.net.blocks[1].mlpOut;
  const original = await w.w.read();
  try {
    for (const lambda of [10, 1e-2]) {
      const hp = applyMemitOverrides(await loadMemitHparams(CONFIG), {
        layers: "[1]",
        v_num_grad_steps: 2,
        mom2_update_weight: lambda,
      });
      const ed = new MemitEditor(model, hp, {
        stats: identity,
        templates: [["{}"], ["The news. {}", "I said. {}"]],
      });
      const res = await ed.editBatch(REQUESTS);
      const after = await w.w.read();
      const L = res.layers[0], B = REQUESTS.length, dm = model.config.hiddenSize;
      // ΔW K from the weights (Conv1D [d_ff, d_model]): (ΔW K)[b, o] = Σ_i K[b, i]·ΔW[i, o]
      const dWK = new Float64Array(B * dm);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < d; i++) {
          const k = L.K[b * d + i];
          for (let o = 0; o < dm; o++) dWK[b * dm + o] += k * (after[i * dm + o] - original[i * dm + o]);
        }
      }
      // exact expectation: ΔW K = R·M with M = G(λI + G)⁻¹, G = K Kᵀ (B×B), solved in f64
      const G = new Float64Array(B * B);
      for (let a = 0; a < B; a++) {
        for (let b = 0; b < B; b++) {
          for (let i = 0; i < d; i++) G[a * B + b] += L.K[a * d + i] * L.K[b * d + i];
        }
      }
      const M = mInverse(G, B, lambda);
      let err = 0, dev = 0, norm = 0;
      for (let b = 0; b < B; b++) {
        for (let o = 0; o < dm; o++) {
          let e = 0;
          for (let a = 0; a < B; a++) e += L.resid[a * dm + o] * M[a * B + b];
          err = Math.max(err, Math.abs(dWK[b * dm + o] - e));
          dev = Math.max(dev, Math.abs(dWK[b * dm + o] - L.resid[b * dm + o]));
          norm = Math.max(norm, Math.abs(L.resid[b * dm + o]));
        }
      }
      assert.ok(err / norm < 2e-3, `λ ${lambda}: ΔW K vs R·M: ${err / norm}`);
      if (lambda < 1) assert.ok(dev / norm < 1e-3, `λ ${lambda}: W'k − Wk = R up to ${dev / norm}`);
      assert.equal(ed.history.length, 1, "one applied entry (one layer)");
      assert.equal(ed.history[0].delta.rank, B);
      // saved through AppliedEdit, restored exactly, reloaded bit-identically
      const out = await Deno.makeTempDir();
      await saveEdits(out, ed.history, hp.base.raw);
      await ed.restore();
      assert.deepEqual(await w.w.read(), original, "restore is exact");
      await applyEdits(model, await readEdits(out, model));
      assert.deepEqual(await w.w.read(), after, "reloaded edits give the same weights");
      await ed.restore().catch(() => {});
      w.w.write(original);
      await w.w.gpu.sync();
      await Deno.remove(out, { recursive: true });
      ed.dispose();
    }
  } finally {
    await model.dispose();
  }
});

/** G (λI + G)⁻¹ for a small SPD G (f64 Gauss–Jordan). */
function mInverse(G: Float64Array, B: number, lambda: number): Float64Array {
  const A = Float64Array.from(G);
  for (let i = 0; i < B; i++) A[i * B + i] += lambda;
  const inv = new Float64Array(B * B);
  for (let i = 0; i < B; i++) inv[i * B + i] = 1;
  for (let c = 0; c < B; c++) {
    const p = A[c * B + c];
    for (let j = 0; j < B; j++) A[c * B + j] /= p, inv[c * B + j] /= p;
    for (let r = 0; r < B; r++) {
      if (r === c) continue;
      const f = A[r * B + c];
      for (let j = 0; j < B; j++) A[r * B + j] -= f * A[c * B + j], inv[r * B + j] -= f * inv[c * B + j];
    }
  }
  const out = new Float64Array(B * B);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < B; j++) for (let k = 0; k < B; k++) out[i * B + j] += G[i * B + k] * inv[k * B + j];
  }
  return out;
}

Deno.test("MEMIT / AlphaEdit bad input: layer range, λ ≤ 0, L2, threshold, conflicting targets", async () => {
  const text = await Deno.readTextFile(CONFIG);
  assert.throws(
    () => parseMemitHparams(text.replace("mom2_update_weight: 10", "mom2_update_weight: 0"), "m.yaml"),
    (e: Error) =>
      e instanceof HparamsError && /m\.yaml: mom2_update_weight: expected a number > 0/.test(e.message),
  );
  assert.throws(
    () => parseMemitHparams(text.replace("mom2_update_weight: 10", "mom2_update_weight: -1"), "m.yaml"),
    /mom2_update_weight/,
  );
  assert.throws(
    () => parseMemitHparams(text.replace("layers: [0, 1]", "layers: [1, 0]"), "m.yaml"),
    /strictly increasing/,
  );
  const alpha = text.replace('alg_name: "MEMIT"', 'alg_name: "AlphaEdit"');
  assert.throws(() => parseMemitHparams(alpha, "a.yaml"), /a\.yaml: nullspace_threshold: missing/);
  assert.throws(
    () => parseMemitHparams(alpha + "nullspace_threshold: 0.02\nL2: 0\n", "a.yaml"),
    /a\.yaml: L2/,
  );
  assert.throws(() => parseMemitHparams(text + "update: rome\n", "m.yaml"), /update/);
  assert.throws(() => parseMemitHparams(text + "v_lrr: 1\n", "m.yaml"), /v_lrr/);
  assert.throws(
    () => checkConflicts([REQUESTS[0], { ...REQUESTS[0], targetNew: "Europe" }]),
    /requests 0 and 1 .* different targets .*separate batches/,
  );
  checkConflicts([REQUESTS[0], { ...REQUESTS[0] }]); // the same fact twice is allowed
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const model = await loadModel(dir, { quiet: true });
  try {
    const hp = applyMemitOverrides(await loadMemitHparams(CONFIG), { layers: "[4, 9]" });
    assert.throws(
      () => new MemitEditor(model, hp, { stats: () => Promise.reject(new Error("unused")) }),
      /layer 9 outside/,
    );
  } finally {
    await model.dispose();
  }
});

Deno.test("every MEMIT / AlphaEdit config parses with the reference values", async () => {
  const root = new URL("../../configs/", import.meta.url).pathname;
  const seen: string[] = [];
  for (const alg of ["MEMIT", "AlphaEdit"]) {
    for await (const e of Deno.readDir(`${root}${alg}`)) {
      const hp = await loadMemitHparams(`${root}${alg}/${e.name}`);
      assert.equal(hp.algName, alg, e.name);
      if (alg === "AlphaEdit") assert.ok(hp.nullspaceThreshold > 0 && hp.l2 > 0, e.name);
      seen.push(`${alg}/${e.name}`);
    }
  }
  const xl = await loadMemitHparams(`${root}MEMIT/gpt2-xl.yaml`);
  assert.deepEqual(xl.layers, [13, 14, 15, 16, 17]);
  assert.equal(xl.mom2UpdateWeight, 20000);
  assert.equal(xl.base.clampNormFactor, 0.75);
  const l3 = await loadMemitHparams(`${root}AlphaEdit/llama3-8b.yaml`);
  assert.deepEqual([l3.layers, l3.l2, l3.nullspaceThreshold, l3.base.vLr], [[4, 5, 6, 7, 8], 10, 0.02, 0.1]);
  assert.equal(seen.length, 10, seen.join(", "));
});
