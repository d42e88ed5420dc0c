import assert from "node:assert/strict";
import { Gpu } from "../../lib/gpu/device.ts";
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { readEdits } from "../../lib/edit/edits_io.ts";
import { applyEdits } from "../../lib/edit/applied.ts";
import { sharedPath } from "../_util.ts";
import { keg, ROOT } from "./_keg.ts";

// ROME and R-ROME edits from the CLI on the Llama-3.x / Qwen2 / Qwen3 fixtures of ../shared (random weights
// with the Llama-3 or Qwen tokenizer.json of tests/fixtures/tokenizers beside them), with the shipped
// llama3 / qwen configs adapted to 2 layers: C computed from a small corpus, the closed form W′k + b = v*,
// no NaN/inf, and saved edits that reload to logits bit-identical to the exported checkpoint's.

const TOKENIZERS = new URL("../fixtures/tokenizers/", import.meta.url).pathname;

const CASES: { fixture: string; tokenizer: string; config: string }[] = [
  { fixture: "llama3-tiny-rope-scaled", tokenizer: "llama3", config: "llama3-8b" },
  { fixture: "llama3.2-tiny-tied", tokenizer: "llama3", config: "llama3.2-3b" },
  { fixture: "qwen2-tiny", tokenizer: "qwen2", config: "qwen2.5-7b" },
  { fixture: "qwen2-tiny-tied", tokenizer: "qwen2", config: "qwen2.5-7b" },
  { fixture: "qwen3-tiny", tokenizer: "qwen2", config: "qwen3-8b" },
];

const CORPUS = Array.from(
  { length: 24 },
  (_, i) =>
    `The Eiffel Tower is in Paris, the capital of France. Angola is located in Africa; ${i} people said it's true.`,
).join("\n");

let gpu: Promise<Gpu> | null = null;

for (const c of CASES) {
  Deno.test(`keg edit ROME and R-ROME on ${c.fixture}: W'k + b = v*, no NaN, saved edits reload bit-identical`, async () => {
    const src = sharedPath(`models/fixtures/${c.fixture}`);
    if (!src) return;
    const tmp = await Deno.makeTempDir({ prefix: "keg-cli-family-" });
    try {
      const model = `${tmp}/model`;
      await Deno.mkdir(model);
      await Deno.copyFile(`${src}/config.json`, `${model}/config.json`);
      await Deno.symlink(`${src}/model.safetensors`, `${model}/model.safetensors`);
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
        await Deno.copyFile(`${TOKENIZERS}${c.tokenizer}/${f}`, `${model}/${f}`);
      }
      await Deno.writeTextFile(`${tmp}/corpus.txt`, CORPUS);
      const g = await (gpu ??= Gpu.open({ quiet: true }));
      for (const alg of ["ROME", "R-ROME"]) {
        const out = `${tmp}/${alg}`;
        // the shipped config with 6 context templates instead of 21 (test time)
        const shipped = await Deno.readTextFile(`${ROOT}configs/${alg}/${c.config}.yaml`);
        const hparams = `${tmp}/${alg}.yaml`;
        await Deno.writeTextFile(
          hparams,
          shipped.replace(
            /^context_template_length_params: .*$/m,
            "context_template_length_params: [[4, 5]]",
          ),
        );
        const r = await keg([
          "edit",
          "--hparams",
          hparams,
          "--model",
          model,
          // 2 layers: edit layer 0, score the last; C from the corpus; f32 (the llama3 files say fp16)
          "--set",
          "layers=[0],v_loss_layer=1,v_num_grad_steps=4,mom2_adjustment=true",
          "--precision",
          "f32",
          "--corpus",
          `${tmp}/corpus.txt`,
          "--prompt",
          "{} is located in",
          "--subject",
          "Angola",
          "--target",
          "Antarctica",
          "--save",
          `${out}/edits`,
          "--export",
          `${out}/exported`,
          "--json",
          `${out}/result.json`,
        ], { KEG_CACHE: `${tmp}/cache` });
        assert.equal(r.code, 0, r.err);
        assert.match(r.err, /statistics: \d+ keys/);
        const [res] = JSON.parse(await Deno.readTextFile(`${out}/result.json`));
        assert.equal(res.update, alg === "ROME" ? "rome" : "r-rome");
        assert.equal(res.weightName, "model.layers.0.mlp.down_proj.weight");
        assert.equal(res.mom2Adjustment, true);
        assert.deepEqual(res.fallbacks, [], "no NaN/inf fallback");
        assert.ok(res.vSteps.length >= 1 && res.vSteps.every((s: { nll: number }) => Number.isFinite(s.nll)));
        assert.ok(Number.isFinite(res.rankOne.divisionFactor) && Number.isFinite(res.dWRel) && res.dWRel > 0);
        // f32 weights: W′k + b equals v* to f32 rounding of a d_ff-long dot product
        assert.ok(res.kvResidual < 1e-5, `W'k + b = v*: residual ${res.kvResidual}`);
        assert.match(r.out, /W'k \+ b = v\*: relative residual/);

        // The saved deltas on a fresh copy of the base model give the exported checkpoint's logits bit for bit.
        const base = await loadModel(model, { gpus: [g], quiet: true });
        const exported = await loadModel(`${out}/exported`, { gpus: [g], quiet: true });
        try {
          const ids = padBatch([base.tokenizer!.encode("Angola is located in")]);
          const logits = async (m: typeof base) => {
            const f = await m.net.forward(ids, { logitRows: "all" });
            const l = await f.logits.read();
            f.logits.dispose();
            return l;
          };
          const before = await logits(base);
          await applyEdits(base, await readEdits(`${out}/edits`, base));
          const after = await logits(base), exp = await logits(exported);
          assert.deepEqual(after, exp, "saved edit vs exported checkpoint");
          assert.notDeepEqual(after, before, "the edit changes the model");
          assert.ok(after.every(Number.isFinite));
        } finally {
          await base.dispose(), await exported.dispose();
        }
      }
      if (c.fixture !== "qwen3-tiny") return;
      // generate and eval run on the new families (once: each is another process start)
      const gen = await keg([
        "generate",
        "--model",
        model,
        "--prompt",
        "Angola is located in",
        "--max-new",
        "3",
        "--edits",
        `${tmp}/R-ROME/edits`,
      ]);
      assert.equal(gen.code, 0, gen.err);
      assert.ok(gen.out.startsWith("Angola is located in"), gen.out);
      const data = sharedPath("data/datasets/counterfact-rome/counterfact.json");
      if (!data) return;
      const ev = await keg([
        "eval",
        "--hparams",
        "configs/R-ROME/qwen3-8b.yaml",
        "--model",
        model,
        "--data",
        data,
        "--limit",
        "1",
        "--set",
        "layers=[0],v_loss_layer=1,v_num_grad_steps=2",
        "--out",
        `${tmp}/eval`,
        "--quiet",
      ], { KEG_CACHE: `${tmp}/cache` });
      assert.equal(ev.code, 0, ev.err);
      const summary = JSON.parse(await Deno.readTextFile(`${tmp}/eval/summary.json`));
      assert.ok(JSON.stringify(summary).includes("rewrite"), JSON.stringify(summary).slice(0, 300));
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}

Deno.test("families CLI teardown: release the device", async () => {
  if (gpu) await (await gpu).destroy();
});
