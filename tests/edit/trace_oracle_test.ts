/**
 * Causal tracing against the PyTorch oracles in ../shared/models/<model>/trace_reference (their stored
 * noise): token ids, subject ranges and answer ids exactly; clean / corrupted scores and grid entries
 * within 1e-4 in f32 (the oracle README's tolerance: its f32 − f64 spread is ≤ 1.1e-5). CI traces fact 0's
 * whole grid and, for facts 1–4, the last subject token and the last token (every kind and layer);
 * `KEG_TRACE_FULL=1` traces every entry of all 5 facts (about 10 minutes on lavapipe).
 * @module
 */
import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { answerToken, TRACE_KINDS, traceFact, tracePrompt } from "../../lib/edit/trace.ts";
import { maxAbsDiff, sharedPath } from "../_util.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const FULL = Deno.env.get("KEG_TRACE_FULL") === "1";
const TOL = 1e-4;

for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
  Deno.test(`causal trace of ${name} matches the PyTorch oracle in f32 (stored noise)`, async () => {
    const dir = sharedPath(`models/${name}/trace_reference`);
    if (!dir) return;
    const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace.json`));
    const noiseFile = await openSafetensors(`${dir}/noise.safetensors`);
    const model = await loadModel(`${dir}/..`, { precision: "f32", quiet: true });
    try {
      assert.equal(ref.facts.length, 5);
      for (const [i, f] of (ref.facts as Json[]).entries()) {
        const t0 = performance.now();
        const p = tracePrompt(model.tokenizer!, f.prompt, f.subject);
        assert.deepEqual(p.inputIds, f.input_ids, `${f.case_id} input ids`);
        assert.deepEqual(p.tokens, f.input_tokens, `${f.case_id} tokens`);
        assert.deepEqual(p.subjectRange, f.subject_range, `${f.case_id} subject range`);
        const answerId = answerToken(model.tokenizer!, f.target);
        assert.equal(answerId, f.answer_id, `${f.case_id} answer id`);
        const noise = (await noiseFile.readFloat(f.noise_key, "f32")).data;
        const T = p.inputIds.length;
        const tokens = FULL || i === 0 ? undefined : [p.subjectRange[1] - 1, T - 1];
        const r = await traceFact(
          model.net,
          { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId },
          {
            noise,
            window: ref.window,
            tokens,
          },
        );
        assert.ok(r.correctPrediction, `${f.case_id} is known`);
        assert.ok(
          Math.abs(r.highScore - f.high_score) <= TOL,
          `${f.case_id} high ${r.highScore} vs ${f.high_score}`,
        );
        assert.ok(
          Math.abs(r.lowScore - f.low_score) <= TOL,
          `${f.case_id} low ${r.lowScore} vs ${f.low_score}`,
        );
        assert.ok(
          maxAbsDiff(r.lowScorePerSample, f.low_score_per_sample) <= TOL,
          `${f.case_id} low per sample`,
        );
        const errs: string[] = [];
        for (const kind of TRACE_KINDS) {
          const want = f.scores[kind] as number[][];
          assert.equal(r.scores[kind]!.length, want.length);
          let e = 0, n = 0;
          for (const t of tokens ?? want.map((_, t) => t)) {
            e = Math.max(e, maxAbsDiff(r.scores[kind]![t], want[t]));
            n += want[t].length;
          }
          errs.push(`${kind} ${e.toExponential(1)} (${n})`);
          assert.ok(e <= TOL, `${f.case_id} ${kind}: max |diff| ${e}`);
        }
        const s = ((performance.now() - t0) / 1000).toFixed(1);
        console.log(`${name} ${f.case_id}: max |diff| ${errs.join(", ")}; ${r.forwards} forwards, ${s} s`);
      }
    } finally {
      await noiseFile.close();
      await model.dispose();
    }
  });
}
