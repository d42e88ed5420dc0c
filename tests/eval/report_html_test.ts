/**
 * The report's statistics and rendering on synthetic results (no GPU): bootstrap intervals against
 * closed-form expectations, paired differences, the 0 vs n/a markers, the heatmap marks, the per-edit
 * table (subject marked, top-5 before/after, old results without top-k), sequential-only plots, and the
 * side-by-side comparison with paired differences.
 * @module
 */
import assert from "node:assert/strict";
import type { RecordResult } from "../../lib/eval/protocol.ts";
import {
  bootstrapMean,
  bootstrapRatio,
  buildSummary,
  pairedBootstrap,
  quantile,
  renderHtml,
  type RunData,
  svgBarChart,
  svgHeatmap,
  svgHistogram,
} from "../../lib/eval/report.ts";
import { rng } from "../../lib/util/random.ts";

Deno.test("bootstrap: constant data, a proportion's interval ≈ the normal one, determinism, quantiles", () => {
  assert.equal(quantile([1, 2, 3, 4], 0.25), 1.75); // numpy's linear interpolation
  assert.equal(quantile([5], 0.9), 5);
  const c = bootstrapMean([0.4, 0.4, 0.4]);
  for (const x of [c.value, c.lo, c.hi]) assert.ok(Math.abs(x - 0.4) < 1e-15);
  assert.equal(c.n, 3);
  const r = rng(7);
  const xs: number[] = Array.from({ length: 400 }, () => (r() < 0.3 ? 1 : 0));
  const p = xs.reduce((a, b) => a + b, 0) / xs.length;
  const iv = bootstrapMean(xs, { resamples: 4000 });
  const half = 1.96 * Math.sqrt((p * (1 - p)) / xs.length); // the normal approximation's half width
  assert.ok(Math.abs(iv.value - p) < 1e-12);
  assert.ok(
    Math.abs(p - iv.lo - half) < 0.012 && Math.abs(iv.hi - p - half) < 0.012,
    `${iv.lo} ${iv.hi} ±${half}`,
  );
  assert.deepEqual(bootstrapMean(xs, { resamples: 500 }), bootstrapMean(xs, { resamples: 500 }));
  // Σs/Σc: EasyEdit's mean over every prompt, not the mean of record means
  assert.equal(bootstrapRatio([{ s: 2, c: 2 }, { s: 0, c: 1 }]).value, 2 / 3);
  assert.ok(Number.isNaN(bootstrapMean([]).value));
});

Deno.test("paired bootstrap: a constant shift has a zero-width interval; noise makes it wider", () => {
  const r = rng(3);
  const a = Array.from({ length: 50 }, () => ({ s: r(), c: 1 }));
  const shifted = a.map((x) => ({ s: x.s + 0.1, c: 1 }));
  const d = pairedBootstrap(a, shifted);
  assert.ok(Math.abs(d.value - 0.1) < 1e-12 && Math.abs(d.lo - 0.1) < 1e-12 && Math.abs(d.hi - 0.1) < 1e-12);
  const same = pairedBootstrap(a, a);
  assert.deepEqual([same.value, same.lo, same.hi], [0, 0, 0]);
  // noise of sd 0.2/√12 per pair: the interval has about 2 · 1.96 · 0.058 / √50 ≈ 0.032 width
  const noisy = pairedBootstrap(a, a.map((x) => ({ s: x.s + 0.1 + (r() - 0.5) * 0.2, c: 1 })));
  const w = noisy.hi - noisy.lo;
  assert.ok(noisy.lo < noisy.value && noisy.value < noisy.hi && w > 0.02 && w < 0.045, `width ${w}`);
  assert.throws(() => pairedBootstrap(a, a.slice(1)), RangeError);
});

Deno.test("charts: a 0 is marked, a missing value says n/a, values and axis titles are printed", () => {
  const b = svgBarChart("t", ["pre", "post"], [{
    label: "ES",
    values: [0, 80],
    intervals: [[0, 0], [60, 95]],
  }, {
    label: "locality",
    values: [undefined, 70],
  }], { yMax: 100, unit: "%", colorBy: "group", seriesShort: ["pre", "post"], yLabel: "mean (%)" });
  assert.equal((b.match(/class="zero"/g) ?? []).length, 1, "the 0 bar has its baseline mark");
  assert.equal((b.match(/class="na">n\/a</g) ?? []).length, 1);
  assert.ok(b.includes('class="val">80<') && b.includes('class="val">0<') && b.includes('class="val">70<'));
  assert.ok(b.includes("95 % CI 60–95%") && b.includes("mean (%)"));
  const h = svgHistogram("x", [1, 1, 2, 9], { bins: 4, domain: [0, 10], xLabel: "seconds", missing: 2 });
  assert.ok(h.includes("(n=4, 2 n/a)") && h.includes(">seconds<") && h.includes(">records<"));
  assert.ok(h.includes('class="val">3<') && h.includes('class="val">1<'), "counts printed on the bars");
  const m = svgHeatmap("hm", ["ES", "PS"], [{ label: "#0 a", cells: [1, 0.5] }, {
    label: "#1 b",
    cells: [0, undefined],
    note: "edit failed",
  }]);
  assert.ok(m.includes(">✓<") && m.includes(">✗<") && m.includes(">0.50<") && m.includes(">n/a<"));
  assert.ok(m.includes("#1 b (edit failed)"));
});

function rec(index: number, post: { es: number; ps: number; pNew: number }, topK = true): RecordResult {
  const nll = -Math.log(post.pNew);
  const r: RecordResult = {
    index,
    caseId: 10 + index,
    format: "counterfact-rome",
    request: {
      prompt: "The capital of {} is",
      subject: `Land${index}`,
      targetNew: "Paris",
      groundTruth: "Rome",
    },
    protocol: "independent",
    pre: {
      rewriteAcc: [0],
      rewritePromptsProbs: [{ targetNew: 5, targetTrue: 0.1 }],
      paraphrasePromptsProbs: [{ targetNew: 5, targetTrue: 0.1 }],
      neighborhoodPromptsProbs: [{ targetNew: 5, targetTrue: 0.1 }],
    },
    post: {
      rewriteAcc: [post.es],
      rewritePromptsProbs: [{ targetNew: nll, targetTrue: post.es ? 3 : 0.5 }],
      paraphrasePromptsProbs: [{ targetNew: post.ps ? 1 : 4, targetTrue: 2 }],
      neighborhoodPromptsProbs: [{ targetNew: 5, targetTrue: 0.1 }],
    },
    edits: [{
      subject: `Land${index}`,
      targetNew: "Paris",
      layer: 0,
      weightName: "w",
      update: "rome",
      divisionFactor: 3 + index,
      dWRel: 0.01,
      vNll: [5, 0.5],
      vForwards: 5,
      fallbacks: [],
      warnings: [],
      timings: { templates: 0, kStar: 0, vStar: 1, solve: 0, update: 0, total: 1 },
    }],
    time: 1,
    evalSeconds: 0.1,
    memory: [],
  };
  if (topK) {
    r.topK = {
      pre: [{ id: 1, prob: 0.9, text: " Rome" }, { id: 2, prob: 0.05, text: " the" }],
      post: [{ id: 3, prob: 0.7, text: " Paris" }, { id: 1, prob: 0.2, text: " Rome" }],
    };
  }
  return r;
}

function runOf(label: string, results: RecordResult[]): RunData {
  return { label, info: null, results, summary: buildSummary(results) };
}

Deno.test("renderHtml: per-edit table, old results without top-k, missed edits explained, paired comparison", () => {
  const a = [
    rec(0, { es: 1, ps: 1, pNew: 0.7 }),
    rec(1, { es: 0, ps: 0, pNew: 0.01 }, false),
    rec(2, { es: 1, ps: 0, pNew: 0.4 }),
  ];
  const one = renderHtml([runOf("A run", a)]);
  assert.ok(one.includes("The capital of <mark>Land0</mark> is"), "the subject is marked in the prompt");
  assert.ok(
    one.includes('<code class="tok"><b> Paris</b></code> 70.0%'),
    "top-5 after, the new target in bold",
  );
  assert.ok(one.includes("not recorded"), "results written before keg recorded top-k still render");
  assert.ok(one.includes("missed: P(new) still below P(true) after the edit"));
  assert.ok(one.includes("0.7% →<br><b>70.0%</b>"), "P(new) pre → post");
  assert.ok(!one.includes("Running mean over the first k edits"));
  assert.ok(!/<script|<link|src=/.test(one), "self-contained, no scripts");
  // a second run where record 1 now succeeds: paired Δ ES = +33.3 points over 3 pairs
  const b = [
    rec(0, { es: 1, ps: 1, pNew: 0.8 }),
    rec(1, { es: 1, ps: 1, pNew: 0.6 }),
    rec(2, { es: 1, ps: 0, pNew: 0.4 }),
  ];
  const two = renderHtml([runOf("A run", a), runOf("B run", b)]);
  assert.ok(two.includes("B − A<br>"));
  assert.match(two, /\+33\.3<br><span class="ci">\[0\.0, \+100\.0\] n=3<\/span>/);
  assert.ok(two.includes("+59.0 pts"), "per-record Δ P(new) of record 1");
  assert.ok(two.includes("Per record, paired (3 records in every run)"));
});

Deno.test("renderHtml: sequential runs get the running-mean and final-model plots", () => {
  const rs = [rec(0, { es: 1, ps: 1, pNew: 0.7 }), rec(1, { es: 0, ps: 1, pNew: 0.2 })].map((r) => ({
    ...r,
    protocol: "sequential" as const,
    final: r.post,
  }));
  const html = renderHtml([{ label: "seq", info: null, results: rs, summary: buildSummary(rs) }]);
  assert.ok(
    html.includes("Running mean over the first k edits") && html.includes("Edit i on the final model"),
  );
  assert.ok(html.includes("Pass/fail per record and metric (final model)"));
  assert.ok(html.includes("final mean [95 % CI]"));
});
