import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { applyOverrides, loadHparams } from "../../lib/edit/hparams.ts";
import { loadStatsFile } from "../../lib/edit/covariance.ts";
import { RomeEditor } from "../../lib/edit/rome.ts";
import { exportCheckpoint, readEdits, saveEdits } from "../../lib/edit/edits_io.ts";
import { applyEdits } from "../../lib/edit/applied.ts";
import { normalizeRequest } from "../../lib/edit/request.ts";
import { sharedPath } from "../_util.ts";

Deno.test("editor: sequential edits, saved deltas reload to identical logits, restore is exact, bad input", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const tmp = await Deno.makeTempDir();
  // cheap settings: 3 forwards of v*, 6 context templates
  const hp = applyOverrides(await loadHparams("configs/R-ROME/tiny-gpt2-counterfact.yaml"), {
    v_num_grad_steps: 3,
    context_template_length_params: [[5, 5]],
  });
  const model = await loadModel(dir, { quiet: true });
  const probe = padBatch([
    model.tokenizer!.encode("Angola is located in"),
    model.tokenizer!.encode("Lady Gaga plays the"),
  ]);
  const logits = async (m = model) => {
    const r = await m.net.forward(probe, { logitRows: "last" });
    const out = await r.logits.read();
    r.logits.dispose();
    return out;
  };
  try {
    const before = await logits();
    const stats = await loadStatsFile(model, 0, `${dir}/rome_reference/mom2_layer0.safetensors`);
    const editor = new RomeEditor(model, hp, { stats, cacheRoot: tmp });
    // bad requests never reach the GPU
    assert.throws(
      () => normalizeRequest({ prompt: "{} is in", subject: "X", target_new: "" }, "req"),
      /target/,
    );
    assert.throws(
      () => normalizeRequest({ prompt: "Paris is in", subject: "Rome", target_new: "Italy" }, "req"),
      /subject/,
    );
    const e1 = await editor.edit({ prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" });
    const e2 = await editor.edit({ prompt: "{} plays the", subject: "Lady Gaga", targetNew: "violin" });
    assert.equal((await editor.templates()).length, 6);
    for (const { report: e } of [e1, e2]) {
      assert.equal(e.vSteps.length, 3);
      assert.ok(e.rankOne.divisionFactor > 0 && Number.isFinite(e.dWRel) && e.dWRel > 0);
      assert.equal(e.fallbacks.length, 0);
    }
    const edited = await logits();
    assert.notDeepEqual(Array.from(edited), Array.from(before), "the edits change the model");
    // save, reload on a fresh copy of the base model: identical logits
    const path = await saveEdits(`${tmp}/edits`, editor.history, hp.raw);
    const saved = await readEdits(path, model);
    assert.equal(saved.length, 2);
    assert.deepEqual(saved[1].requests, e2.applied.requests);
    assert.deepEqual(saved, editor.history, "the saved edits are the applied ones");
    const fresh = await loadModel(dir, { quiet: true });
    try {
      await applyEdits(fresh, saved);
      assert.deepEqual(Array.from(await logits(fresh)), Array.from(edited));
    } finally {
      await fresh.dispose();
    }
    // a full exported checkpoint (same layout and dtypes) loads to the same logits
    await exportCheckpoint(model, `${tmp}/exported`, editor.history);
    const exported = await loadModel(`${tmp}/exported`, { quiet: true });
    try {
      assert.deepEqual(Array.from(await logits(exported)), Array.from(edited));
      assert.equal(exported.tokenizer?.encode(" Paris").length, 1);
    } finally {
      await exported.dispose();
    }
    // restore gives the original model back exactly
    await editor.restore();
    assert.equal(editor.history.length, 0);
    assert.deepEqual(Array.from(await logits()), Array.from(before));
    // edits made on another base model are refused
    const other = await loadModel(sharedPath("models/tiny-llama-counterfact")!, { quiet: true });
    try {
      await assert.rejects(() => readEdits(path, other), /another base model/);
    } finally {
      await other.dispose();
    }
    // a layer outside the model is a clear error naming the file
    assert.throws(
      () => new RomeEditor(model, applyOverrides(hp, { layers: [9] }), { stats }),
      /tiny-gpt2-counterfact\.yaml.*layer 9/,
    );
    editor.dispose();
  } finally {
    await model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an edit with layers on two devices equals the single-device edit bit for bit (tiny-llama, f16)", async () => {
  const dir = sharedPath("models/tiny-llama-counterfact");
  if (!dir) return;
  const hp = applyOverrides(await loadHparams("configs/R-ROME/tiny-llama-counterfact.yaml"), {
    v_num_grad_steps: 2,
    mom2_adjustment: false,
    precision: "f16",
  });
  const templates = ["{}", "The city. {}", "Because of this. {}"];
  const results = [];
  for (const devices of [1, 2]) {
    const model = await loadModel(dir, { precision: "f16", devices, quiet: true });
    try {
      assert.equal(new Set(model.net.layerDevice).size, devices);
      const editor = new RomeEditor(model, hp, { templates });
      results.push(
        await editor.edit({ prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" }),
      );
    } finally {
      await model.dispose();
    }
  }
  assert.deepEqual(Array.from(results[1].report.delta), Array.from(results[0].report.delta));
  assert.deepEqual(Array.from(results[1].report.rankOne.r), Array.from(results[0].report.rankOne.r));
  assert.deepEqual(results[1].report.vSteps, results[0].report.vSteps);
});
