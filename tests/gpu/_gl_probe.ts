/**
 * Run by backend_test.ts in a child process under DENO_WEBGPU_BACKEND=gl: opens devices (not quiet, so
 * the GL warning prints), then runs forwards of two ../shared fixtures in f32 and f16 (stored as f32
 * without shader-f16) and prints one JSON line with the backend, the f16 flag and the worst logit error
 * per precision.
 * @module
 */
import { Gpu } from "../../lib/gpu/mod.ts";
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";

interface Case {
  input_ids: number[][];
  lengths: number[];
  last_positions: number[];
  last_logits: number[][];
}

const fixtures = Deno.args;
const a = await Gpu.open();
const b = await Gpu.open(); // a second device: the warning is printed once per process
const worst: Record<string, number> = { f32: 0, f16: 0 };
for (const dir of fixtures) {
  const ref: { cases: Case[] } = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
  for (const precision of ["f32", "f16"] as const) {
    const model = await loadModel(dir, { precision, gpus: [a] });
    const c = ref.cases[0];
    const batch = padBatch(c.input_ids.map((row, i) => row.slice(0, c.lengths[i])));
    const r = await model.net.forward(batch, { logitRows: "all" });
    const logits = await r.logits.read();
    const V = model.config.vocabSize;
    c.last_positions.forEach((p, i) => {
      const row = logits.subarray((i * batch.seq + p) * V, (i * batch.seq + p + 1) * V);
      for (let j = 0; j < V; j++) {
        worst[precision] = Math.max(worst[precision], Math.abs(row[j] - c.last_logits[i][j]));
      }
    });
    r.logits.dispose();
    await model.dispose();
  }
}
console.log(JSON.stringify({ backend: a.report.backend, f16: a.f16 || b.f16, worst }));
