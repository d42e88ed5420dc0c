/**
 * The Figure-2 roll-up against the oracle's own `summary` (the 5 oracle facts' grids in, its roll-up out),
 * and the heatmap / table / page rendering.
 * @module
 */
import assert from "node:assert/strict";
import { bucketRows, rollup, ROLLUP_BUCKETS, rollupKinds } from "../../lib/eval/trace_rollup.ts";
import { renderTraceHtml, rollupMarkdown, svgTraceHeatmap } from "../../lib/eval/trace_report.ts";
import { maxAbsDiff, sharedPath } from "../_util.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("bucket rows follow ROME's read_knowlege slices", () => {
  assert.deepEqual(bucketRows([0, 4], 8), {
    first_subject: [0],
    middle_subject: [1, 2],
    last_subject: [3],
    first_subsequent: [4],
    further: [5, 6],
    last: [7],
  });
  // one-token subject: first = last subject token; subject right before the last token
  assert.deepEqual(bucketRows([6, 7], 8), {
    first_subject: [6],
    middle_subject: [],
    last_subject: [6],
    first_subsequent: [7],
    further: [],
    last: [7],
  });
  assert.throws(() => rollup([]), /no facts/);
});

for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
  Deno.test(`roll-up of the oracle's 5 facts equals its summary (${name})`, async () => {
    const dir = sharedPath(`models/${name}/trace_reference`);
    if (!dir) return;
    const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace.json`));
    const facts = ref.facts.map((f: Json) => ({
      subjectRange: f.subject_range,
      highScore: f.high_score,
      lowScore: f.low_score,
      scores: f.scores,
    }));
    const got = rollupKinds(facts);
    for (const kind of ["hidden", "mlp", "attn"] as const) {
      const r = got[kind]!, want = ref.summary[kind];
      assert.equal(r.n_facts, want.n_facts);
      assert.ok(Math.abs(r.high_score - want.high_score) < 1e-9);
      assert.ok(Math.abs(r.low_score - want.low_score) < 1e-9);
      assert.ok(Math.abs(r.total_effect - want.total_effect) < 1e-9);
      for (const b of ROLLUP_BUCKETS) {
        assert.equal(r.n_rows[b], want.n_rows[b], `${kind} ${b} rows`);
        assert.ok(maxAbsDiff(r.aie[b], want.aie[b]) < 1e-9, `${kind} ${b} aie`);
        assert.ok(maxAbsDiff(r.aie_own_low[b], want.aie_own_low[b]) < 1e-9, `${kind} ${b} aie_own_low`);
      }
    }
    // rendering: one cell per (token, layer), subject tokens marked, a labelled colour bar
    const f = ref.facts[0];
    const svg = svgTraceHeatmap("mlp", {
      tokens: f.input_tokens,
      subjectRange: f.subject_range,
      scores: f.scores.mlp,
      lowScore: f.low_score,
      highScore: f.high_score,
      answer: f.answer_token,
      window: 3,
    });
    assert.equal((svg.match(/<rect [^>]*fill="#[0-9a-f]{6}"/g) ?? []).length, f.input_ids.length * 6);
    assert.match(svg, /Ang\*/);
    assert.match(svg, /center of interval of 3 restored MLP layers/);
    assert.match(svg, new RegExp(`p\\(Africa\\)`));
    const md = rollupMarkdown("hidden", got.hidden!, 3);
    assert.match(md, /\| LAST subject token \(5\) \|/);
    const html = renderTraceHtml({
      title: "t <x>",
      settings: ["a"],
      rollups: got,
      window: 3,
      facts: [{ caption: "c", svgs: [svg] }],
    });
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /t &lt;x&gt;/);
    assert.equal((html.match(/<table>/g) ?? []).length, 3);
    assert.ok(!/src="http|href="http/.test(html), "self-contained");
  });
}
