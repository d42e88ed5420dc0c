/**
 * Driver of the kill tests (run as a subprocess): loads fake-gpt2-tiny, applies one rank-2 edit, then
 * writes `--save`-style edits files and `--export`-style checkpoints into `<root>/save<i>` and
 * `<root>/export<i>` for i = 0, 1, 2, … until it is killed, printing `wrote <i>` after each pair.
 */
import { loadModel } from "../../lib/model/load.ts";
import { type AppliedEdit, applyEdits, linearDims } from "../../lib/edit/applied.ts";
import { exportCheckpoint, saveEdits } from "../../lib/edit/edits_io.ts";
import { randArray } from "../_util.ts";

const [root, modelPath] = Deno.args;
const model = await loadModel(modelPath, { quiet: true });
const w = model.net.blocks[0].mlpOut;
const [dIn, dOut] = linearDims(w);
const edit: AppliedEdit = {
  method: "test",
  layer: 0,
  weightName: w.name,
  delta: { rank: 2, dIn, dOut, u: randArray(2 * dIn, 1), r: randArray(2 * dOut, 2) },
  requests: [{ prompt: "{} is in", subject: "Angola", targetNew: "Oz" }],
  fingerprint: model.fingerprint,
  batch: 0,
};
await applyEdits(model, [edit]);
console.log("ready");
for (let i = 0;; i++) {
  await saveEdits(`${root}/save${i}`, [edit], { test: true });
  await exportCheckpoint(model, `${root}/export${i}`, [edit]);
  console.log(`wrote ${i}`);
}
