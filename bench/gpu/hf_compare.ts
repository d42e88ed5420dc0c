/**
 * keg's forward on a model written by bench/gpu/hf_reference.py, against transformers' logits and
 * time: max |Δlogit| of the last positions and seconds per forward in f32, f16 and mixed, next to
 * transformers' f32 / f16 times from the same machine. Prints one JSON line per precision.
 *
 * Run: `deno run -A bench/gpu/hf_compare.ts DIR [reps]`.
 * @module
 */
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";

const dir = Deno.args[0];
const reps = Number(Deno.args[1] ?? "5");
if (!dir) throw new Error("usage: hf_compare.ts DIR [reps]");
const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`)) as {
  input_ids: number[][];
  last_logits: number[][];
  hf_forward_s: { f32: number; f16: number | null };
  device: string;
};
const batch = padBatch(ref.input_ids);
for (const precision of ["f32", "f16", "mixed"] as const) {
  const model = await loadModel(dir, { precision, quiet: true });
  const V = model.config.vocabSize;
  const run = async () => {
    const r = await model.net.forward(batch, { logitRows: "all" });
    const logits = await r.logits.read();
    r.logits.dispose();
    return logits;
  };
  const logits = await run(); // also compiles the pipelines
  let worst = 0;
  ref.input_ids.forEach((row, b) => {
    const at = (b * batch.seq + row.length - 1) * V;
    for (let j = 0; j < V; j++) worst = Math.max(worst, Math.abs(logits[at + j] - ref.last_logits[b][j]));
  });
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run();
  const s = (performance.now() - t0) / 1000 / reps;
  const hf = precision === "f32" ? ref.hf_forward_s.f32 : ref.hf_forward_s.f16;
  console.log(JSON.stringify({
    precision,
    adapter: model.net.devices[0].report.description,
    hfDevice: ref.device,
    maxAbsLogitDiff: worst,
    kegForwardS: s,
    hfForwardS: hf,
    kegOverHf: hf ? s / hf : null,
  }));
  await model.dispose();
}
