/**
 * `keg edit` and `keg eval` with MEMIT / AlphaEdit configs, end to end in a subprocess on tiny-gpt2 (layer 0
 * only, ../shared's C, 2 z forwards so it is quick): the batch edit runs and saves one delta per layer that
 * `generate --edits` reloads; a sequential batch eval writes the retention table; bad input fails clearly.
 */
import assert from "node:assert/strict";
import { sharedPath } from "../_util.ts";
import { readEdits } from "../../lib/edit/edits_io.ts";
import { keg } from "./_keg.ts";

Deno.test("keg edit / keg eval with MEMIT configs: batches, saved deltas, retention table, errors", async () => {
  const model = sharedPath("models/tiny-gpt2-counterfact");
  const data = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!model || !data) return;
  const tmp = await Deno.makeTempDir();
  try {
    const req = `${tmp}/requests.json`;
    await Deno.writeTextFile(
      req,
      JSON.stringify([
        { prompt: "{} is located in", subject: "Angola", target_new: "Antarctica" },
        { prompt: "{} is located in", subject: "Shanghai", target_new: "Dresden" },
      ]),
    );
    const common = [
      "--hparams",
      "configs/MEMIT/tiny-gpt2-counterfact.yaml",
      "--model",
      model,
      "--stats",
      `${model}/rome_reference/mom2_layer0.safetensors`,
      "--set",
      "layers=[0],v_num_grad_steps=2,context_template_length_params=[[5,5]]",
    ];
    const r = await keg(["edit", ...common, "--requests", req, "--save", `${tmp}/edits`]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /MEMIT batch 1: 2 request\(s\), layers \[0\]/);
    assert.match(r.out, /layer 0: ‖z − cur_z‖ [\d.]+, ‖ΔW‖\/‖W‖ [\d.]+/);
    const saved = await readEdits(`${tmp}/edits`);
    assert.equal(saved.length, 1);
    assert.equal(saved[0].method, "memit");
    assert.equal(saved[0].delta.rank, 2);
    const g = await keg([
      "generate",
      "--model",
      model,
      "--prompt",
      "Angola is located in",
      "--edits",
      `${tmp}/edits`,
    ]);
    assert.equal(g.code, 0, g.err);
    const e = await keg([
      "eval",
      ...common,
      "--data",
      data,
      "--limit",
      "4",
      "--batch-size",
      "2",
      "--sequential",
      "--out",
      `${tmp}/run`,
      "--quiet",
    ]);
    assert.equal(e.code, 0, e.err);
    const md = await Deno.readTextFile(`${tmp}/run/summary.md`);
    assert.match(md, /Sequential retention \(rewrite accuracy %, batches of 2\)/);
    const ret = JSON.parse(await Deno.readTextFile(`${tmp}/run/retention.json`));
    assert.equal(ret.rows.length, 2);
    assert.equal(ret.rows[1].rewrite.length, 2);
    assert.match(await Deno.readTextFile(`${tmp}/run/report.html`), /Sequential retention/);
    const lines = (await Deno.readTextFile(`${tmp}/run/results.jsonl`)).trim().split("\n");
    assert.equal(lines.length, 4);
    // bad input: a layer outside the model, a conflicting batch
    const bad = await keg(["edit", ...common.slice(0, -1), "layers=[7]", "--requests", req]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /layer 7 outside/);
    await Deno.writeTextFile(
      req,
      JSON.stringify([
        { prompt: "{} is located in", subject: "Angola", target_new: "Antarctica" },
        { prompt: "{} is located in", subject: "Angola", target_new: "Europe" },
      ]),
    );
    const conflict = await keg(["edit", ...common, "--requests", req]);
    assert.notEqual(conflict.code, 0);
    assert.match(conflict.err, /different targets/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
