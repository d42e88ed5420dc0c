/**
 * Report and results-store tests on synthetic results (no GPU): exact JSON-lines round trip, torn-line
 * handling, the summary (hand-computed), markdown and HTML rendering, and `keg eval merge` validation.
 */
import assert from "node:assert/strict";
import { evalCommand } from "../../lib/cli/eval.ts";
import type { EditDiagnostics, FinalResult, RecordResult } from "../../lib/eval/protocol.ts";
import {
  attachFinal,
  buildSummary,
  escapeHtml,
  fromJsonLine,
  inSelection,
  parseJsonl,
  readRunDir,
  renderHtml,
  renderMarkdown,
  RUN_FILES,
  type RunData,
  type RunInfo,
  svgBarChart,
  svgHistogram,
  toJsonLine,
} from "../../lib/eval/report.ts";

function diag(div: number, rel: number, extra: Partial<EditDiagnostics> = {}): EditDiagnostics {
  return {
    subject: "s",
    targetNew: "t",
    layer: 0,
    weightName: "transformer.h.0.mlp.c_proj.weight",
    update: "rome",
    divisionFactor: div,
    dWRel: rel,
    vNll: [10, 1],
    vForwards: 5,
    fallbacks: [],
    warnings: [],
    timings: { templates: 0, kStar: 0.1, vStar: 1, solve: 0.1, update: 0.1, total: 1.3 },
    ...extra,
  };
}

/**
 * A synthetic record: post rewrite accuracy `rw`, rewrite NLLs (new, true), one paraphrase, two
 * neighborhood prompts, locality values.
 */
function result(index: number, o: {
  rw: number;
  rwNll: [number, number];
  loc: number[];
  subject?: string;
  time?: number;
  diag?: EditDiagnostics;
}): RecordResult {
  return {
    index,
    caseId: 100 + index,
    format: "counterfact-rome",
    request: {
      prompt: "{} is in",
      subject: o.subject ?? `S${index}`,
      targetNew: "Paris",
      groundTruth: "Rome",
    },
    protocol: "independent",
    pre: {
      rewriteAcc: [0],
      rephraseAcc: [0],
      rewritePromptsProbs: [{ targetNew: 9, targetTrue: 1 }],
      paraphrasePromptsProbs: [{ targetNew: 9, targetTrue: 1 }],
      neighborhoodPromptsProbs: [{ targetNew: 9, targetTrue: 1 }, { targetNew: 9, targetTrue: 1 }],
    },
    post: {
      rewriteAcc: [o.rw],
      rephraseAcc: [o.rw / 2],
      locality: { neighborhood: o.loc },
      rewritePromptsProbs: [{ targetNew: o.rwNll[0], targetTrue: o.rwNll[1] }],
      paraphrasePromptsProbs: [{ targetNew: 5, targetTrue: 1 }],
      neighborhoodPromptsProbs: [{ targetNew: 9, targetTrue: 1 }, { targetNew: 1, targetTrue: 2 }],
    },
    edits: [o.diag ?? diag(5 + index, 0.1 * (index + 1))],
    time: o.time ?? 1 + index,
    evalSeconds: 0.5,
    memory: [{ device: "gpu0", liveBytes: 1000, peakBytes: 2000 + index }],
  };
}

const R0 = result(0, { rw: 1, rwNll: [0.5, 3], loc: [1, 2 / 3] });
const R1 = result(1, { rw: 0.5, rwNll: [4, 3], loc: [1, 1] });
const R2 = result(2, { rw: 0, rwNll: [6, 3], loc: [0, 1], subject: "<script>alert(1)</script>" });

Deno.test("toJsonLine / fromJsonLine: exact round trip of non-finite numbers; strings untouched", () => {
  const v = { a: NaN, b: [Infinity, -Infinity, 0.1 + 0.2], c: "NaN", d: { $f: 1 }, e: -0 };
  const back = fromJsonLine(toJsonLine(v)) as typeof v;
  assert.ok(Number.isNaN(back.a));
  assert.deepEqual(back.b, [Infinity, -Infinity, 0.1 + 0.2]);
  assert.equal(back.c, "NaN");
  assert.deepEqual(back.d, { $f: 1 }, "a $f that is not a string stays an object");
  assert.ok(!toJsonLine(v).includes("\n"));
});

Deno.test("parseJsonl: a torn last line is ignored and validBytes points at its start", () => {
  const good = toJsonLine({ s: "Zürich — ok" }) + "\n" + toJsonLine({ n: 2 }) + "\n";
  const c = parseJsonl(good + '{"n": 3, "tor', "r.jsonl");
  assert.deepEqual(c.values, [{ s: "Zürich — ok" }, { n: 2 }]);
  assert.equal(c.partial, true);
  assert.equal(c.validBytes, new TextEncoder().encode(good).length, "bytes, not UTF-16 units");
  const whole = parseJsonl(good, "r.jsonl");
  assert.equal(whole.partial, false);
  assert.equal(whole.values.length, 2);
  assert.throws(() => parseJsonl('{"a":1}\n{oops}\n{"b":2}\n', "r.jsonl"), /r\.jsonl:2: not a JSON line/);
  assert.deepEqual(parseJsonl("", "r.jsonl"), { values: [], validBytes: 0, partial: false });
});

Deno.test("buildSummary: EasyEdit and ROME numbers of synthetic records (hand-computed)", () => {
  const s = buildSummary([R0, R1, R2]);
  assert.equal(s.num_cases, 3);
  assert.equal(s.easyedit.post.rewrite_acc, 0.5); // (1 + 0.5 + 0) / 3
  assert.equal(s.easyedit.post.rephrase_acc, 0.25);
  // locality: mean over records of each record's mean: (5/6 + 1 + 1/2) / 3
  assert.ok(Math.abs(s.easyedit.post.locality!.neighborhood_acc - (5 / 6 + 1 + 0.5) / 3) < 1e-12);
  assert.equal(s.easyedit.pre.locality, undefined);
  // ES: record 0 only (0.5 < 3), ×100 → 33.33; NS: per record 1/2 → 50
  assert.deepEqual(s.rome.post_rewrite_success, [33.33, 47.14]);
  assert.deepEqual(s.rome.post_neighborhood_success, [50, 0]);
  assert.deepEqual(s.rome.post_paraphrase_success, [0, 0]);
  assert.equal(s.rome.post_score[0], 0, "S = 0 when PS = 0");
  assert.deepEqual(s.rome.pre_neighborhood_success, [100, 0]);
  assert.deepEqual(s.rome.time, [2, Math.sqrt(2 / 3)]);
  assert.equal(s.final, undefined);
  const d = s.diagnostics;
  assert.equal(d.edits, 3);
  assert.equal(d.failed, 0);
  assert.deepEqual(d.divisionFactor, { min: 5, median: 6, max: 7 });
  assert.ok(Math.abs(d.dWRel.mean - 0.2) < 1e-12 && Math.abs(d.dWRel.max - 0.3) < 1e-12);
  assert.equal(d.timing.peakBytes, 2002);
});

Deno.test("buildSummary: failed edits, fallbacks and final metrics of a sequential run", () => {
  const failed = {
    ...result(3, { rw: 0, rwNll: [9, 1], loc: [1, 1], diag: diag(NaN, NaN, { error: "non-finite" }) }),
    error: "non-finite",
  };
  const fb = result(4, { rw: 1, rwNll: [0.1, 5], loc: [1, 1], diag: diag(2, 0.5, { fallbacks: ["v*"] }) });
  const finals: FinalResult[] = [
    {
      index: 3,
      caseId: 103,
      editsApplied: 2,
      final: { rewriteAcc: [0.25], rewritePromptsProbs: [{ targetNew: 1, targetTrue: 2 }] },
    },
    {
      index: 4,
      caseId: 104,
      editsApplied: 2,
      final: { rewriteAcc: [0.75], rewritePromptsProbs: [{ targetNew: 3, targetTrue: 2 }] },
    },
    { index: 4, caseId: 104, editsApplied: 7, final: { rewriteAcc: [0] } }, // another run size: ignored
  ];
  const withFinal = attachFinal([fb, failed], finals, 2);
  assert.deepEqual(withFinal.map((r) => r.index), [3, 4], "index order");
  const s = buildSummary(withFinal);
  assert.equal(s.diagnostics.failed, 1);
  assert.equal(s.diagnostics.fallbacks, 1);
  assert.deepEqual(s.diagnostics.divisionFactor, { min: 2, median: 2, max: 2 }, "failed edits are left out");
  assert.equal(s.final?.num_cases, 2);
  assert.equal(s.final?.easyedit.rewrite_acc, 0.5);
  assert.deepEqual(s.final?.rome.final_rewrite_success, [50, 50]);
  assert.ok(!Object.keys(s.final!.rome).some((k) => k.startsWith("post_") || k.startsWith("pre_")));
  const md = renderMarkdown(s);
  assert.match(md, /\| final \(all edits\) \| 50\.00 \|/);
});

Deno.test("renderMarkdown: EasyEdit layout and ROME's ES/PS/NS/S", () => {
  const md = renderMarkdown(buildSummary([R0, R1, R2]));
  assert.match(md, /\| phase \| rewrite_acc \| rephrase_acc \| locality neighborhood_acc \| portability \|/);
  assert.match(md, /\| pre \| 0\.00 \| 0\.00 \| – \| – \|/);
  assert.match(md, /\| post \| 50\.00 \| 25\.00 \| 77\.78 \| – \|/);
  assert.match(md, /\| phase \| ES \| PS \| NS \| S \| EM \| PM \| NM \| GE \|/);
  assert.match(md, /\| post \| 33\.33 \| 0\.00 \| 50\.00 \| 0\.00 \|/);
  assert.match(md, /\| 3 \| 0 \| 0 \| 0 \| 5\.000 \/ 6\.000 \/ 7\.000 \|/);
});

Deno.test("svgHistogram / svgBarChart: bins count what falls in them; text is escaped", () => {
  const h = svgHistogram("acc <x>", [0, 0.05, 0.5, 0.99, 1, 1], { bins: 10, domain: [0, 1] });
  assert.ok(h.startsWith("<svg ") && h.endsWith("</svg>"));
  assert.ok(h.includes("acc &lt;x&gt; (n=6)"));
  assert.ok(h.includes("0 – 0.1: 2</title>"), "first bin holds 0 and 0.05");
  assert.ok(h.includes("0.9 – 1: 3</title>"), "the last bin holds 0.99 and both 1s");
  assert.equal((h.match(/<rect /g) ?? []).length, 10);
  const b = svgBarChart("t", ["f32", "f16"], [{ label: "ES", values: [50, undefined] }, {
    label: "NS",
    values: [NaN, 100],
  }], {
    yMax: 100,
  });
  assert.equal((b.match(/<rect [^>]*><title>/g) ?? []).length, 2, "missing values draw no bar");
  assert.equal(escapeHtml(`<a href="x">&</a>`), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
});

function info(over: Partial<RunInfo> = {}): RunInfo {
  return {
    version: 1,
    key: "k1",
    hparams: "configs/ROME/x.yaml",
    hparamsValues: { layers: [0] },
    model: "../shared/models/m",
    fingerprint: "fp",
    data: "cf.json",
    dataSha256: "abc",
    format: "counterfact-rome",
    precision: "f32",
    protocol: "independent",
    update: "rome",
    stats: "file x",
    fluency: null,
    limit: null,
    shard: null,
    records: 3,
    created: "2026-01-01T00:00:00Z",
    ...over,
  };
}

Deno.test("renderHtml: self-contained, charts per run, runs side by side, subjects escaped", () => {
  const a: RunData = {
    label: "cf (f32, independent)",
    info: info(),
    results: [R0, R1, R2],
    summary: buildSummary([R0, R1, R2]),
  };
  const b: RunData = {
    label: "cf (f16, independent)",
    info: info({ precision: "f16" }),
    results: [R0, R1],
    summary: buildSummary([R0, R1]),
  };
  const one = renderHtml([a]);
  assert.ok(one.startsWith("<!DOCTYPE html>"));
  assert.ok(!one.includes("<script>alert"), "the subject is escaped");
  assert.ok(one.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
  assert.ok(!/<script|<link|src=/.test(one), "no scripts, no external resources");
  for (
    const t of [
      "Pre vs post edit (mean, %, 95 % CI)",
      "Pass/fail per record and metric (post-edit)",
      "division factor k·u",
      "Per edit (3)",
    ]
  ) {
    assert.ok(one.includes(t), t);
  }
  assert.ok(
    !one.includes("Running mean over the first k edits"),
    "no sequential curves for independent runs",
  );
  assert.ok(!one.includes("Runs side by side"));
  const two = renderHtml([a, b]);
  assert.ok(two.includes("Runs side by side") && two.includes("Post-edit metrics by run (%)"));
  assert.ok(two.includes("Per record, paired (2 records in every run)"));
  assert.ok(two.includes("cf (f16, independent)") && two.includes("cf (f32, independent)"));
  assert.ok((two.match(/<svg /g) ?? []).length > (one.match(/<svg /g) ?? []).length);
  assert.throws(() => renderHtml([]), RangeError);
});

Deno.test("inSelection: limit and shard", () => {
  assert.ok(inSelection({ limit: null, shard: null }, 1000));
  assert.ok(!inSelection({ limit: 5, shard: null }, 5));
  assert.ok(inSelection({ limit: 5, shard: { index: 1, count: 2 } }, 3));
  assert.ok(!inSelection({ limit: 5, shard: { index: 1, count: 2 } }, 2));
});

async function writeRun(dir: string, i: RunInfo, results: RecordResult[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/${RUN_FILES.run}`, JSON.stringify(i));
  await Deno.writeTextFile(`${dir}/${RUN_FILES.results}`, results.map((r) => toJsonLine(r) + "\n").join(""));
}

Deno.test("keg eval merge: shards combine into the one-run summary; bad shard sets are refused", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "keg_merge_" });
  const log = console.log, err = console.error;
  console.log = console.error = () => {};
  try {
    const sh = (index: number, count: number) => ({ index, count });
    await writeRun(`${tmp}/s0`, info({ shard: sh(0, 2), records: 2 }), [R0, R2]);
    await writeRun(`${tmp}/s1`, info({ shard: sh(1, 2), records: 1 }), [R1]);
    await evalCommand(["merge", "--out", `${tmp}/m`, `${tmp}/s1`, `${tmp}/s0`]);
    const merged = await readRunDir(`${tmp}/m`);
    assert.deepEqual(merged.results.map((r) => r.index), [0, 1, 2]);
    assert.deepEqual(merged.summary, buildSummary([R0, R1, R2]));
    const onDisk = JSON.parse(await Deno.readTextFile(`${tmp}/m/${RUN_FILES.summaryJson}`));
    assert.equal(onDisk.num_cases, 3);
    assert.deepEqual(onDisk.rome.post_rewrite_success, [33.33, 47.14]);
    assert.equal(merged.info?.shard, null);
    assert.deepEqual(merged.info?.mergedFrom, [`${tmp}/s1`, `${tmp}/s0`]);
    for (const f of [RUN_FILES.summaryMd, RUN_FILES.report]) await Deno.stat(`${tmp}/m/${f}`);

    await assert.rejects(
      () => evalCommand(["merge", "--out", `${tmp}/x`, `${tmp}/s0`]),
      /missing shard\(s\) 1\/2/,
    );
    await writeRun(`${tmp}/s1b`, info({ shard: sh(1, 2), records: 2 }), [R1]);
    await assert.rejects(
      () => evalCommand(["merge", "--out", `${tmp}/x`, `${tmp}/s0`, `${tmp}/s1b`]),
      /has 1 of its 2 records; finish it first/,
    );
    await writeRun(`${tmp}/s1c`, info({ key: "k2", precision: "f16", shard: sh(1, 2), records: 1 }), [R1]);
    await assert.rejects(
      () => evalCommand(["merge", "--out", `${tmp}/x`, `${tmp}/s0`, `${tmp}/s1c`]),
      /other settings .*precision differ/,
    );
    await assert.rejects(
      () => evalCommand(["merge", "--out", `${tmp}/s0`, `${tmp}/s0`, `${tmp}/s1`]),
      /is one of the shards/,
    );
    await assert.rejects(
      () => evalCommand(["merge", "--out", `${tmp}/x`, `${tmp}/s0`, `${tmp}/s0`, `${tmp}/s1`]),
      /given twice/,
    );
    await assert.rejects(() => Deno.stat(`${tmp}/x`), Deno.errors.NotFound, "a refused merge writes nothing");
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("keg eval report: re-renders a run and compares runs found in subdirectories", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "keg_report_" });
  const log = console.log, err = console.error;
  console.log = console.error = () => {};
  try {
    await writeRun(`${tmp}/cmp/f32`, info(), [R0, R1, R2]);
    await writeRun(`${tmp}/cmp/f16`, info({ precision: "f16", key: "k2" }), [R0, R1, R2]);
    await evalCommand(["report", "--out", `${tmp}/cmp`]);
    const html = await Deno.readTextFile(`${tmp}/cmp/${RUN_FILES.report}`);
    assert.ok(html.includes("Runs side by side"));
    assert.ok(html.includes("f16 (f16, independent)") && html.includes("f32 (f32, independent)"));
    await assert.rejects(() => Deno.stat(`${tmp}/cmp/${RUN_FILES.summaryJson}`), Deno.errors.NotFound);
    await evalCommand(["report", "--out", `${tmp}/cmp/f32`, "--compare", `${tmp}/cmp/f16`]);
    assert.ok((await Deno.readTextFile(`${tmp}/cmp/f32/${RUN_FILES.report}`)).includes("Runs side by side"));
    assert.match(await Deno.readTextFile(`${tmp}/cmp/f32/${RUN_FILES.summaryMd}`), /\| post \| 50\.00 \|/);
    await assert.rejects(() => evalCommand(["report", "--out", `${tmp}/nothing`]), /no run here/);
    // runs named on the command line, side by side in a new folder, in the order given
    await evalCommand(["report", "--out", `${tmp}/side`, `${tmp}/cmp/f16`, `${tmp}/cmp/f32`]);
    const side = await Deno.readTextFile(`${tmp}/side/${RUN_FILES.report}`);
    assert.ok(
      side.indexOf('<b>A</b>: <a href="#run0">f16') > 0 && side.includes('<b>B</b>: <a href="#run1">f32'),
    );
    assert.ok(side.includes("B − A<br>") && side.includes("Per record, paired (3 records in every run)"));
    await assert.rejects(() => Deno.stat(`${tmp}/side/${RUN_FILES.summaryJson}`), Deno.errors.NotFound);
    await assert.rejects(
      () => evalCommand(["report", "--out", `${tmp}/side2`, `${tmp}/cmp/f32`, `${tmp}/nothing`]),
      /nothing is not a keg eval run/,
    );
    await assert.rejects(() => Deno.stat(`${tmp}/side2`), Deno.errors.NotFound);
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(tmp, { recursive: true });
  }
});
