import assert from "node:assert/strict";
import { sharedPath } from "../_util.ts";
import { keg, ROOT } from "./_keg.ts";

Deno.test("keg edit (the README's main command) changes the fact and saves it; generate applies it", async () => {
  const model = sharedPath("models/tiny-gpt2-counterfact");
  if (!model) return;
  const tmp = await Deno.makeTempDir();
  try {
    const r = await keg([
      "edit",
      "--hparams",
      "configs/R-ROME/tiny-gpt2-counterfact-tuned.yaml",
      "--model",
      model,
      "--stats",
      `${model}/rome_reference/mom2_layer0.safetensors`,
      "--prompt",
      "{} is located in",
      "--subject",
      "Angola",
      "--target",
      "Antarctica",
      "--save",
      `${tmp}/edits`,
      "--json",
      `${tmp}/result.json`,
    ], { KEG_CACHE: `${tmp}/cache` });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /pre : P\(new "Antarctica"\) = 0\.\d+%/);
    assert.match(r.out, /post: "Angola is located in" → top: " Antarctica"/);
    assert.match(r.out, /division factor [\d.]+, ‖ΔW‖\/‖W‖ [\d.]+/);
    assert.match(r.err, /weights [\d.]+ MiB/);
    const saved = JSON.parse(await Deno.readTextFile(`${tmp}/result.json`));
    assert.equal(saved[0].request.subject, "Angola");
    const g = await keg([
      "generate",
      "--model",
      model,
      "--prompt",
      "Angola is located in",
      "--max-new",
      "1",
      "--edits",
      `${tmp}/edits`,
    ]);
    assert.equal(g.code, 0, g.err);
    assert.equal(g.out.trim(), "Angola is located in Antarctica");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("keg reports bad input clearly: unknown hparams key, subject not in prompt, unknown command", async () => {
  const model = sharedPath("models/tiny-gpt2-counterfact");
  if (!model) return;
  const tmp = await Deno.makeTempDir();
  try {
    const bad = `${tmp}/bad.yaml`;
    const good = await Deno.readTextFile(`${ROOT}/configs/ROME/tiny-gpt2-counterfact.yaml`);
    await Deno.writeTextFile(bad, good + "\nv_lrr: 0.5\n");
    const a = await keg([
      "edit",
      "--hparams",
      bad,
      "--model",
      model,
      "--prompt",
      "{} is in",
      "--subject",
      "X",
      "--target",
      "Y",
    ]);
    assert.notEqual(a.code, 0);
    assert.match(a.err, /bad\.yaml: v_lrr/);
    const b = await keg([
      "edit",
      "--hparams",
      "configs/ROME/tiny-gpt2-counterfact.yaml",
      "--model",
      model,
      "--prompt",
      "Paris is in",
      "--subject",
      "Rome",
      "--target",
      "Italy",
    ]);
    assert.notEqual(b.code, 0);
    assert.match(b.err, /subject/);
    const c = await keg(["frobnicate"]);
    assert.equal(c.code, 2);
    assert.match(c.err, /unknown command "frobnicate"/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
