/**
 * Causal tracing in f16 and mixed precision against the f32 PyTorch oracle (stored noise, fact 0 of each
 * model: GPT-2's whole grid, Llama's last subject token and last token).
 *
 * Tolerance, derived: the answer's probability p = softmax(z)ₐ moves by dp = p·(dzₐ − Σᵢ pᵢ dzᵢ), so
 * |dp| ≤ 2·p(1 − p)·max|dz| ≤ max|dz| / 2. The forward tests bound the logit error against float64 by 3e-2
 * (f16) and 1e-2 (mixed) on the ../shared fixtures (README, "Correctness"); a mean over the 10 noised
 * rows does not increase the bound. Hence |Δscore| ≤ 1.5e-2 (f16) and 5e-3 (mixed).
 * @module
 */
import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { TRACE_KINDS, traceFact } from "../../lib/edit/trace.ts";
import { maxAbsDiff, sharedPath } from "../_util.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const TOL = { f16: 1.5e-2, mixed: 5e-3 } as const;

for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
  Deno.test(`causal trace of ${name} in f16 and mixed stays within the derived tolerance of the oracle`, async () => {
    const dir = sharedPath(`models/${name}/trace_reference`);
    if (!dir) return;
    const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace.json`));
    const f = ref.facts[0];
    const nf = await openSafetensors(`${dir}/noise.safetensors`);
    const noise = (await nf.readFloat(f.noise_key, "f32")).data;
    await nf.close();
    const T = f.input_ids.length;
    const tokens = name.includes("gpt2") ? undefined : [f.subject_range[1] - 1, T - 1];
    for (const precision of ["f16", "mixed"] as const) {
      const model = await loadModel(`${dir}/..`, { precision, quiet: true });
      try {
        const fact = { inputIds: f.input_ids, subjectRange: f.subject_range, answerId: f.answer_id };
        const r = await traceFact(model.net, fact, { noise, window: ref.window, tokens });
        const errs = [Math.abs(r.highScore - f.high_score), Math.abs(r.lowScore - f.low_score)];
        for (const kind of TRACE_KINDS) {
          for (const t of tokens ?? Array.from({ length: T }, (_, t) => t)) {
            errs.push(maxAbsDiff(r.scores[kind]![t], f.scores[kind][t]));
          }
        }
        const e = Math.max(...errs);
        console.log(
          `${name} ${precision}: max |score − oracle| ${e.toExponential(2)} (tolerance ${TOL[precision]})`,
        );
        assert.ok(e <= TOL[precision], `${precision}: ${e}`);
      } finally {
        await model.dispose();
      }
    }
  });
}
