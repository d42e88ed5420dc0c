/**
 * `keg trace` end to end on the GPT-2 fact model: the oracle's first fact from its stored noise (hidden
 * grid within 1e-4), heatmaps and page written, clear errors, a dataset run that resumes, and
 * `layers: auto` through `keg edit` and `keg eval`.
 * @module
 */
import assert from "node:assert/strict";
import { maxAbsDiff, sharedPath } from "../_util.ts";
import { keg } from "./_keg.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("keg trace: one prompt with the oracle's noise, --suggest-layer, heatmaps, page and clear errors", async () => {
  const model = sharedPath("models/tiny-gpt2-counterfact");
  if (!model) return;
  const ref: Json = JSON.parse(await Deno.readTextFile(`${model}/trace_reference/trace.json`));
  const f = ref.facts[0];
  const tmp = await Deno.makeTempDir();
  try {
    const common = ["trace", "--model", model, "--prompt", "{} is located in", "--subject", "Angola"];
    const r = await keg([
      ...common,
      "--target",
      "Africa",
      "--kind",
      "hidden",
      "--window",
      "3",
      "--noise-file",
      `${model}/trace_reference/noise.safetensors`,
      "--suggest-layer",
      "--noise-level",
      String(ref.noise_level),
      "--out",
      tmp,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /suggested edit layer: 0 \(MLP indirect effect 0\.\d+ .* margin 0\.\d+ over layer \d\)/,
    );
    const got: Json = JSON.parse(await Deno.readTextFile(`${tmp}/trace.json`));
    assert.deepEqual(got.fact.input_ids, f.input_ids);
    assert.deepEqual(got.fact.subject_range, f.subject_range);
    assert.equal(got.fact.answer_id, f.answer_id);
    assert.ok(maxAbsDiff(got.fact.scores.hidden.flat(), f.scores.hidden.flat()) <= 1e-4);
    assert.ok(Math.abs(got.fact.high_score - f.high_score) <= 1e-4);
    const svg = await Deno.readTextFile(`${tmp}/svg/fact_hidden.svg`);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(await Deno.readTextFile(`${tmp}/report.html`), /<svg/);

    const bad = await keg([
      ...common.slice(0, 4),
      "Paris is located in",
      "--subject",
      "Angola",
      "--out",
      tmp,
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--prompt\/--subject: subject "Angola" is not in the prompt "Paris is located in"/);
    const wide = await keg([...common, "--window", "7", "--out", tmp]);
    assert.equal(wide.code, 2);
    assert.match(wide.err, /--window 7 is larger than the model's 6 layers/);
    const wrong = await keg([
      ...common,
      "--target",
      "Europe",
      "--kind",
      "hidden",
      "--noise-level",
      "0.18",
      "--out",
      tmp,
    ]);
    assert.equal(wrong.code, 0, wrong.err);
    assert.match(
      wrong.err,
      /does not predict " Europe" when clean \(it predicts " Africa"\); tracing the given target/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("keg trace --data: known facts only, roll-up files, resumes; keg edit and keg eval with layers: auto", async () => {
  const model = sharedPath("models/tiny-gpt2-counterfact");
  const cf = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!model || !cf) return;
  const tmp = await Deno.makeTempDir();
  try {
    const args = ["trace", "--model", model, "--data", cf, "--limit", "1", "--kind", "mlp", "--out", tmp];
    const r = await keg([
      ...args,
      "--noise-file",
      `${model}/trace_reference/noise.safetensors`,
      "--window",
      "3",
    ]);
    assert.equal(r.code, 0, r.err);
    const lines = (await Deno.readTextFile(`${tmp}/results.jsonl`)).trim().split("\n");
    assert.equal(lines.length, 1);
    const ref: Json = JSON.parse(await Deno.readTextFile(`${model}/trace_reference/trace.json`));
    const got = JSON.parse(lines[0]);
    assert.equal(got.case_id, ref.facts[0].case_id);
    assert.ok(maxAbsDiff(got.scores.mlp.flat(), ref.facts[0].scores.mlp.flat()) <= 1e-4);
    const summary: Json = JSON.parse(await Deno.readTextFile(`${tmp}/summary.json`));
    assert.equal(summary.summary.mlp.n_facts, 1);
    assert.match(await Deno.readTextFile(`${tmp}/summary.md`), /\*\*MLP, window 3 — n = 1/);
    assert.match(await Deno.readTextFile(`${tmp}/report.html`), /Average indirect effect/);
    const again = await keg([
      ...args,
      "--noise-file",
      `${model}/trace_reference/noise.safetensors`,
      "--window",
      "3",
    ]);
    assert.equal(again.code, 0, again.err);
    assert.equal((await Deno.readTextFile(`${tmp}/results.jsonl`)).trim().split("\n").length, 1, "resumed");

    const e = await keg([
      "edit",
      "--hparams",
      "configs/R-ROME/tiny-gpt2-counterfact-tuned.yaml",
      "--model",
      model,
      "--stats",
      `${model}/rome_reference/mom2_layer0.safetensors`,
      "--set",
      "layers=auto,v_num_grad_steps=2",
      "--prompt",
      "{} is located in",
      "--subject",
      "Angola",
      "--target",
      "Antarctica",
      "--json",
      `${tmp}/edit.json`,
    ], { KEG_CACHE: `${tmp}/cache` });
    assert.equal(e.code, 0, e.err);
    assert.match(e.err, /layers: auto → \[0\] \(MLP indirect effect/);
    const res: Json = JSON.parse(await Deno.readTextFile(`${tmp}/edit.json`));
    assert.equal(res[0].autoLayer.layer, 0);
    assert.equal(res[0].layer, 0);

    const ev = await keg([
      "eval",
      "--hparams",
      "configs/R-ROME/tiny-gpt2-counterfact-tuned.yaml",
      "--model",
      model,
      "--stats",
      `${model}/rome_reference/mom2_layer0.safetensors`,
      "--set",
      "layers=auto,v_num_grad_steps=2",
      "--data",
      cf,
      "--limit",
      "1",
      "--quiet",
      "--out",
      `${tmp}/eval`,
    ], { KEG_CACHE: `${tmp}/cache` });
    assert.equal(ev.code, 0, ev.err);
    const run: Json = JSON.parse(await Deno.readTextFile(`${tmp}/eval/run.json`));
    assert.deepEqual(run.hparamsValues.layers, [0]);
    assert.equal(run.hparamsValues.layers_auto.layer, 0);
    assert.equal(run.hparamsValues.layers_auto.facts, 1);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
