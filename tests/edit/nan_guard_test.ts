import assert from "node:assert/strict";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../../lib/model/safetensors.ts";
import { loadModel } from "../../lib/model/load.ts";
import { applyOverrides, loadHparams } from "../../lib/edit/hparams.ts";
import { RomeEditor } from "../../lib/edit/rome.ts";
import { countNonFinite } from "../../lib/ops/elementwise.ts";
import { sharedPath } from "../_util.ts";

/** tiny-gpt2-counterfact with layer 5's MLP output scaled so that its activations overflow f16 (not f32). */
async function overflowingModel(src: string, dst: string): Promise<void> {
  for await (const e of Deno.readDir(src)) {
    if (e.isFile && !e.name.endsWith(".safetensors")) {
      await Deno.copyFile(`${src}/${e.name}`, `${dst}/${e.name}`);
    }
  }
  const f = await openSafetensors(`${src}/model.safetensors`);
  const tensors: TensorToWrite[] = [];
  for (const name of f.names()) {
    const raw = await f.read(name);
    if (name === "transformer.h.5.mlp.c_proj.weight") {
      const w = new Float32Array(raw.bytes.buffer).map((x) => x * 3e4);
      tensors.push({ name, dtype: "F32", shape: raw.shape, data: w });
    } else {
      tensors.push({ name, dtype: raw.dtype, shape: raw.shape, data: raw.bytes });
    }
  }
  await f.close();
  await writeSafetensors(`${dst}/model.safetensors`, tensors, { format: "pt" });
}

Deno.test("NaN/inf guard: an f16 overflow in v* is detected, v* is redone with f32 activations, the weight stays finite", async () => {
  const src = sharedPath("models/tiny-gpt2-counterfact");
  if (!src) return;
  const tmp = await Deno.makeTempDir();
  try {
    await overflowingModel(src, tmp);
    const hp = applyOverrides(await loadHparams("configs/R-ROME/tiny-gpt2-counterfact.yaml"), {
      v_num_grad_steps: 2,
      context_template_length_params: [[5, 5]],
      mom2_adjustment: false,
      precision: "f16",
    });
    const model = await loadModel(tmp, { precision: "f16", quiet: true });
    try {
      // the f16 forward itself overflows: this is EasyEdit's "probability tensor contains inf/nan"
      const tok = model.tokenizer!;
      const { padBatch } = await import("../../lib/model/transformer.ts");
      const r = await model.net.forward(padBatch([tok.encode("Angola is located in")]), {
        logitRows: "last",
      });
      assert.ok((await countNonFinite(r.logits)) > 0, "the f16 forward overflows");
      r.logits.dispose();
      const editor = new RomeEditor(model, hp, { templates: ["{}", "The city. {}"] });
      const { report: e } = await editor.edit({
        prompt: "{} is located in",
        subject: "Angola",
        targetNew: "Antarctica",
      });
      assert.deepEqual(e.fallbacks, ["v*"]);
      assert.ok(e.vSteps.every((s) => Number.isFinite(s.loss)), "f32-activation rerun has finite losses");
      assert.ok(e.rankOne.r.every(Number.isFinite) && e.rankOne.u.every(Number.isFinite));
      assert.equal(await countNonFinite(editor.weight.w), 0, "the edited weight is finite");
    } finally {
      await model.dispose();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
