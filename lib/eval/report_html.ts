/**
 * The self-contained HTML report (inline CSS and SVG; no scripts, no external resources; readable on a
 * phone, in print and without colour): per run the headline metrics with 95 % bootstrap intervals, the
 * summary tables, a pre vs post chart, a records × metrics pass/fail heatmap, histograms of the
 * continuous quantities, the sequential-only curves for sequential runs, and an open per-edit table (prompt
 * with the subject marked, P(new) and P(true) before → after, top-5 predictions before and after, pass/fail
 * marks, edit diagnostics); with several runs first a side-by-side comparison with paired per-record
 * differences and paired bootstrap intervals.
 * @module
 */
import type { RecordResult, TopToken } from "./protocol.ts";
import type { RunData } from "./results.ts";
import { bootstrapMean, type Interval, type Item, pairedBootstrap } from "./bootstrap.ts";
import {
  HEADLINE,
  headlineIntervals,
  type HeadlineMetric,
  metricItem,
  type Phase,
  phaseOf,
  recordValues,
  running,
} from "./summary.ts";
import { diagnosticsTable, easyEditTable, num, romeTable, type Table } from "./tables.ts";
import {
  escapeHtml,
  type HeatRow,
  type LineSeries,
  metricColor,
  svgBarChart,
  svgHeatmap,
  svgHistogram,
  svgLineChart,
} from "./svg.ts";

const CSS = `*{box-sizing:border-box}
body{font:15px/1.5 system-ui,sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 14px}
h1{font-size:22px;overflow-wrap:anywhere}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;overflow-wrap:anywhere}
h3{font-size:15px;margin:22px 0 6px}code{overflow-wrap:anywhere;font-size:13px}
.scroll{overflow-x:auto;max-width:100%;-webkit-overflow-scrolling:touch;margin:6px 0 14px}
.scroll.tall{max-height:80vh;overflow-y:auto}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}th:first-child,td:first-child{text-align:left}
td.l,th.l{text-align:left}.meta{color:#555;overflow-wrap:anywhere}.note{color:#555;font-size:13px;max-width:900px}
.sw{display:inline-block;width:.8em;height:.8em;margin-right:.35em;border:1px solid #555;vertical-align:-1px}
.ci{color:#555;font-size:12px;white-space:nowrap}.pass{color:#1a7f37;white-space:nowrap}.fail{color:#b42318;white-space:nowrap}
.na{color:#888;font-style:italic}.warn{color:#a40}mark{background:#ffe58a;padding:0 1px}
.top{font-size:12px;text-align:left;white-space:nowrap}.top li{list-style:none}.top ol{margin:0;padding:0}
.nw{white-space:nowrap}code.tok{white-space:pre;background:#f6f6f6;font-size:12px}
.prompt{min-width:220px;max-width:340px;text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.chart{width:100%;height:auto;max-width:max-content;background:#fff;border:1px solid #eee}
.chart .title{font-size:14px;font-weight:600}.chart .tick{font-size:12px;fill:#333}.chart .axis-title{font-size:12px;fill:#333}
.chart .val{font-size:11px;fill:#111}.chart .na{font-size:11px;fill:#888;font-style:italic}.chart .short{font-size:10px;fill:#555}
.chart .grid{stroke:#eee}.chart .axis{stroke:#888}.chart .zero{stroke:#111;stroke-width:3}.chart .whisker{stroke:#111;stroke-width:1.2;fill:none}
.chart .cell{font-size:12px;fill:#222}.chart .cell-dark{font-size:12px;fill:#fff;font-weight:600}.chart .warn{fill:#a40}
@media (max-width:600px){body{font-size:14px;margin:12px auto;padding:0 8px}th,td{padding:2px 5px}}
@media print{.scroll,.scroll.tall{overflow:visible;max-height:none}th{position:static}}`;

/** A table in a horizontal scroll container; cells are HTML already (escape before). */
function table(head: string[], rows: string[][], opts: { tall?: boolean; leftCols?: number[] } = {}): string {
  const l = new Set(opts.leftCols ?? []);
  const cls = (i: number) => (l.has(i) ? ' class="l"' : "");
  return `<div class="scroll${opts.tall ? " tall" : ""}"><table><thead><tr>${
    head.map((h, i) => `<th${cls(i)}>${h}</th>`).join("")
  }</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join("")}</tr>`).join("")
  }</tbody></table></div>`;
}

function textTable(t: Table): string {
  return table(t.head.map(escapeHtml), t.rows.map((r) => r.map(escapeHtml)));
}

function swatch(m: string): string {
  return `<span class="sw" style="background:${metricColor(m)}"></span>`;
}

/** "82.0 [65.0, 95.0]" for an interval in %. */
function ciCell(iv: Interval | undefined, digits = 1): string {
  if (!iv || !Number.isFinite(iv.value)) return `<span class="na">n/a</span>`;
  return `${iv.value.toFixed(digits)}<br><span class="ci">[${iv.lo.toFixed(digits)}, ${
    iv.hi.toFixed(digits)
  }]</span>`;
}

/** A per-record 0..1 value as a mark: ✓ pass / ✗ fail / fraction / n/a. */
function mark(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return `<span class="na">n/a</span>`;
  if (v === 1) return `<span class="pass">✓ pass</span>`;
  if (v === 0) return `<span class="fail">✗ fail</span>`;
  return `${v.toFixed(2)}`;
}

function prob(nll: number | undefined): number | undefined {
  return nll === undefined || !Number.isFinite(nll) ? undefined : Math.exp(-nll);
}

function pctText(p: number | undefined): string {
  if (p === undefined) return `<span class="na">n/a</span>`;
  return p >= 0.001 || p === 0 ? `${(100 * p).toFixed(1)}%` : `${(100 * p).toExponential(1)}%`;
}

/** P(new), P(true) on the rewrite prompt (per-token geometric-mean probability) of a phase. */
function rewriteProbs(r: RecordResult, phase: Phase): { pNew?: number; pTrue?: number } {
  const x = phaseOf(r, phase)?.rewritePromptsProbs?.[0];
  return { pNew: prob(x?.targetNew), pTrue: prob(x?.targetTrue) };
}

function topList(t: TopToken[] | undefined, targets: string[]): string {
  if (!t) return `<span class="na">not recorded</span>`;
  const want = new Set(targets.map((s) => s.trim()));
  return `<ol>${
    t.map((x) => {
      const text = escapeHtml(JSON.stringify(x.text).slice(1, -1));
      const hit = want.has(x.text.trim());
      return `<li><code class="tok">${hit ? "<b>" : ""}${text}${hit ? "</b>" : ""}</code> ${
        (100 * x.prob).toFixed(1)
      }%</li>`;
    }).join("")
  }</ol>`;
}

/** The rewrite prompt with the subject marked. */
function promptHtml(r: RecordResult): string {
  const { prompt, subject } = r.request;
  const marked = `<mark>${escapeHtml(subject)}</mark>`;
  if (prompt.includes("{}")) return prompt.split("{}").map(escapeHtml).join(marked);
  const i = prompt.indexOf(subject);
  return i < 0 ? escapeHtml(prompt) : escapeHtml(prompt.slice(0, i)) + marked +
    escapeHtml(prompt.slice(i + subject.length));
}

/** Why a record looks the way it does, in words. */
function status(r: RecordResult): string {
  if (r.error !== undefined) return `<span class="fail">edit failed: ${escapeHtml(r.error)}</span>`;
  const v = recordValues(r.post);
  const fb = r.edits.flatMap((e) => e.fallbacks);
  const notes: string[] = [];
  if (fb.length) notes.push(`<span class="warn">NaN fallback: ${escapeHtml(fb.join(", "))}</span>`);
  if (v.ES === 0 && (v.PS ?? 0) === 0) {
    notes.push(`<span class="fail">missed: P(new) still below P(true) after the edit</span>`);
  } else if (v.rewrite_acc !== undefined && v.rewrite_acc < 1 && v.ES === 1) {
    notes.push("P(new) > P(true), but not the argmax everywhere");
  }
  return notes.join("<br>") || `<span class="pass">ok</span>`;
}

function perEditTable(run: RunData): string {
  const rows = run.results.map((r) => {
    const pre = rewriteProbs(r, "pre"), post = rewriteProbs(r, "post");
    const v = recordValues(r.post);
    const e = r.edits[0];
    const truth = r.request.groundTruth;
    return [
      String(r.index),
      `<div class="prompt">${promptHtml(r)}</div>`,
      `${escapeHtml(truth ?? "?")} → <b>${escapeHtml(r.request.targetNew)}</b>`,
      `<span class="nw">${pctText(pre.pNew)} →<br><b>${pctText(post.pNew)}</b></span>`,
      `<span class="nw">${pctText(pre.pTrue)} →<br>${pctText(post.pTrue)}</span>`,
      `<div class="top">${topList(r.topK?.pre, [r.request.targetNew, truth ?? ""])}</div>`,
      `<div class="top">${topList(r.topK?.post, [r.request.targetNew, truth ?? ""])}</div>`,
      mark(v.ES),
      mark(v.PS),
      mark(v.NS),
      v.rewrite_acc === undefined ? mark(undefined) : v.rewrite_acc.toFixed(2),
      v.locality === undefined ? mark(undefined) : v.locality.toFixed(2),
      e ? num(e.divisionFactor, 3) : "–",
      e ? num(e.dWRel, 4) : "–",
      num(r.time, 1),
      status(r),
    ];
  });
  return table(
    [
      "#",
      "rewrite prompt (subject marked)",
      "true → new",
      "P(new) pre → post",
      "P(true) pre → post",
      "top-5 before",
      "top-5 after",
      `${swatch("ES")}ES`,
      `${swatch("PS")}PS`,
      `${swatch("NS")}NS`,
      `${swatch("rewrite_acc")}rewrite acc`,
      `${swatch("locality")}locality`,
      "k·u",
      "‖ΔW‖/‖W‖",
      "edit s",
      "status",
    ],
    rows,
    { tall: true, leftCols: [1, 2, 5, 6, 15] },
  );
}

function std(xs: number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
}

function headlineTable(run: RunData, phases: Phase[]): string {
  const ci = run.summary.ci95;
  const metrics = [...HEADLINE, "S"].filter((m) => phases.some((p) => ci[p]?.[m]));
  const rows = metrics.map((m) => {
    const post = run.results.map((r) => recordValues(r.post)[m]).filter((x): x is number => x !== undefined);
    return [
      `${swatch(m)}${escapeHtml(m)}`,
      ...phases.map((p) => ciCell(ci[p]?.[m])),
      m === "S" || !post.length ? "–" : (100 * std(post)).toFixed(1),
      String(Math.max(...phases.map((p) => ci[p]?.[m]?.n ?? 0))),
    ];
  });
  return table(["metric (%)", ...phases.map((p) => `${p} mean [95 % CI]`), "post std", "n"], rows);
}

function histograms(run: RunData): string {
  const out: string[] = [];
  const pNew = run.results.map((r) => rewriteProbs(r, "post").pNew);
  const have = pNew.filter((x): x is number => x !== undefined);
  if (have.length) {
    out.push(svgHistogram("P(new) after the edit", have, {
      domain: [0, 1],
      color: metricColor("ES"),
      xLabel: "P(new | rewrite prompt), per-token geometric mean",
      missing: pNew.length - have.length,
    }));
  }
  const edits = run.results.flatMap((r) => r.edits.filter((e) => e.error === undefined));
  const failed = run.results.flatMap((r) => r.edits).length - edits.length;
  const finite = (xs: number[]) => xs.filter(Number.isFinite);
  if (edits.length) {
    out.push(svgHistogram("division factor k·u", finite(edits.map((e) => e.divisionFactor)), {
      color: "#9c755f",
      xLabel: "k*ᵀ C⁻¹ k* (dimensionless; ≤ 0 or tiny: a collapsing edit)",
      missing: failed,
    }));
    out.push(svgHistogram("‖ΔW‖ / ‖W‖", finite(edits.map((e) => e.dWRel)), {
      color: "#86bcb6",
      xLabel: "relative Frobenius norm of the update (ratio)",
      missing: failed,
    }));
    out.push(svgHistogram("v* NLL at the last step", finite(edits.map((e) => e.vNll[1])), {
      color: "#d37295",
      xLabel: "mean NLL of the new target (nats / token)",
      missing: failed,
    }));
  }
  out.push(svgHistogram("edit time per record", run.results.map((r) => r.time), {
    color: "#8c8c8c",
    xLabel: "seconds (k*, v*, solve, update)",
  }));
  return `<div class="charts">${out.join("")}</div>`;
}

function heatmap(run: RunData, phase: Phase): string {
  const vals = run.results.map((r) => recordValues(phaseOf(r, phase)));
  const cols = HEADLINE.filter((m) => vals.some((v) => v[m] !== undefined));
  const rows: HeatRow[] = run.results.map((r, i) => ({
    label: `#${r.index} ${r.request.subject}`,
    cells: cols.map((m) => vals[i][m]),
    note: r.error !== undefined ? "edit failed" : undefined,
  }));
  return `<p class="note">✓ pass (1) · ✗ fail (0) · a fraction: the share of the record's prompts that pass · hatched n/a: the record has no such prompts. Cells are shaded in the metric's colour by their value.</p><div class="scroll tall">${
    svgHeatmap(
      `Pass/fail per record and metric (${phase === "final" ? "final model" : `${phase}-edit`})`,
      cols,
      rows,
    )
  }</div>`;
}

function sequentialCurves(run: RunData): string {
  const post = run.results.map((r) => recordValues(r.post));
  const curves: LineSeries[] = [];
  for (const m of ["rewrite_acc", "ES", "PS", "NS", "locality"] as const) {
    const v = post.map((p) => p[m]);
    if (v.some((x) => x !== undefined)) {
      curves.push({
        name: `${m} right after edit k (running mean)`,
        points: running(v),
        color: metricColor(m),
      });
    }
  }
  const parts = [
    `<h3>Sequential edits</h3>`,
    `<p class="note">Edits accumulate in index order. Running mean over the first k edits of each metric measured right after edit k; then every edit again on the final model (all ${run.results.length} edits applied).</p>`,
    `<div class="charts">`,
    svgLineChart("Running mean over the first k edits", curves, {
      xLabel: "edit k",
      yLabel: "running mean (fraction)",
    }),
  ];
  if (run.results.some((r) => r.final)) {
    const fin = run.results.map((r) => recordValues(r.final));
    const lines: LineSeries[] = [];
    for (const m of ["rewrite_acc", "ES", "NS"] as const) {
      const pts = fin.map((v, i) => [i + 1, v[m] ?? NaN] as [number, number]);
      if (pts.some((p) => Number.isFinite(p[1]))) {
        lines.push({
          name: `${m} of edit i on the final model`,
          points: pts,
          color: metricColor(m),
          dashed: true,
        });
      }
    }
    if (lines.length) {
      parts.push(
        svgLineChart("Edit i on the final model", lines, { xLabel: "edit i", yLabel: "value (fraction)" }),
      );
    }
  }
  parts.push(`</div>`, heatmap(run, "final"));
  return parts.join("\n");
}

function runSection(run: RunData, idx: number): string {
  const s = run.summary, info = run.info;
  const sequential = info?.protocol === "sequential" || s.final !== undefined;
  const phases: Phase[] = s.final ? ["pre", "post", "final"] : ["pre", "post"];
  const out: string[] = [`<h2 id="run${idx}">${escapeHtml(run.label)}</h2>`];
  if (info) {
    out.push(
      `<p class="meta">model <code>${escapeHtml(info.model)}</code> · data <code>${
        escapeHtml(info.data)
      }</code> (${escapeHtml(info.format)}) · ${s.num_cases} records · ${escapeHtml(info.precision)} · ${
        escapeHtml(info.protocol)
      } · update ${escapeHtml(info.update)} · hparams <code>${escapeHtml(info.hparams)}</code> · C: ${
        escapeHtml(info.stats)
      }</p>`,
    );
  }
  out.push(
    `<h3>Headline metrics</h3>`,
    headlineTable(run, phases),
    `<p class="note">Mean over records in %; in brackets the 95 % percentile-bootstrap confidence interval (2,000 resamples of the records, seed 0); n = records that have the metric; std = population standard deviation of the per-record values after the edit. rewrite/rephrase acc average every prompt (EasyEdit); ES, PS, NS average per-record scores (ROME); S is the harmonic mean of ES, PS, NS.</p>`,
    `<div class="charts">`,
    svgBarChart(
      "Pre vs post edit (mean, %, 95 % CI)",
      phases,
      [...HEADLINE, "S"].filter((m) => phases.some((p) => s.ci95[p]?.[m])).map((m) => ({
        label: m,
        values: phases.map((p) => s.ci95[p]?.[m]?.value),
        intervals: phases.map((p) => {
          const iv = s.ci95[p]?.[m];
          return iv ? [iv.lo, iv.hi] as [number, number] : undefined;
        }),
      })),
      { yMax: 100, unit: "%", yLabel: "mean over records (%)", colorBy: "group", seriesShort: phases },
    ),
    `</div>`,
    `<h3>EasyEdit metrics (%)</h3>`,
    textTable(easyEditTable(s)),
    `<h3>ROME CounterFact metrics (×100)</h3>`,
    textTable(romeTable(s)),
    `<h3>Edits</h3>`,
    textTable(diagnosticsTable(s)),
    `<h3>Pass/fail per record</h3>`,
    heatmap(run, "post"),
    `<h3>Distributions over records</h3>`,
    histograms(run),
  );
  if (sequential) out.push(sequentialCurves(run));

  const flagged = run.results.filter((r) =>
    r.error !== undefined || r.edits.some((e) => e.fallbacks.length || e.warnings.length)
  );
  if (flagged.length) {
    out.push(
      `<h3 class="warn">Failed edits, NaN fallbacks, warnings (${flagged.length})</h3><ul>`,
      ...flagged.map((r) =>
        `<li>#${r.index} case ${r.caseId} ${escapeHtml(r.request.subject)}: ${
          escapeHtml(
            [
              r.error ?? "",
              ...r.edits.flatMap((e) => [...e.fallbacks.map((f) => `fallback ${f}`), ...e.warnings]),
            ].filter(Boolean).join("; "),
          )
        }</li>`
      ),
      `</ul>`,
    );
  }
  out.push(
    `<h3>Per edit (${run.results.length})</h3>`,
    `<p class="note">P(x) = exp(−mean NLL of x's tokens) after the rewrite prompt; top-5 = the model's most likely next tokens after it (bold: the new or the true target). ES: P(new) &gt; P(true) on the rewrite prompt; PS: the same on paraphrases (fraction); NS: P(true) &gt; P(new) on neighbourhood prompts (fraction). n/a: the record has no such prompts.</p>`,
    perEditTable(run),
  );
  return out.join("\n");
}

/** The records of two runs that match (same index and case), as aligned lists. */
function pairs(a: RunData, b: RunData): [RecordResult, RecordResult][] {
  const byKey = new Map(b.results.map((r) => [`${r.index}:${r.caseId}`, r]));
  return a.results.flatMap((r) => {
    const o = byKey.get(`${r.index}:${r.caseId}`);
    return o ? [[r, o] as [RecordResult, RecordResult]] : [];
  });
}

/** Paired post-edit difference (b − a, in points) of a metric over the records both runs have it for. */
function pairedDiff(p: [RecordResult, RecordResult][], m: HeadlineMetric): Interval | undefined {
  const xa: Item[] = [], xb: Item[] = [];
  for (const [a, b] of p) {
    const ia = metricItem(a.post, m), ib = metricItem(b.post, m);
    if (ia && ib) xa.push(ia), xb.push(ib);
  }
  if (!xa.length) return undefined;
  const iv = pairedBootstrap(xa, xb);
  return { value: 100 * iv.value, lo: 100 * iv.lo, hi: 100 * iv.hi, n: iv.n };
}

function diffCell(iv: Interval | undefined): string {
  if (!iv || !Number.isFinite(iv.value)) return `<span class="na">n/a</span>`;
  const sign = (x: number) => (x > 0 ? "+" : "") + x.toFixed(1);
  const sure = iv.lo > 0 || iv.hi < 0 ? " <b>*</b>" : "";
  return `${sign(iv.value)}${sure}<br><span class="ci">[${sign(iv.lo)}, ${sign(iv.hi)}] n=${iv.n}</span>`;
}

function comparisonSection(runs: RunData[]): string {
  const letters = runs.map((_, i) => String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(i) : ""));
  const post = runs.map((r) => headlineIntervals(r.results, "post"));
  const metrics = [...HEADLINE, "S"].filter((m) => post.some((p) => p[m]));
  const base = runs[0];
  const paired = runs.slice(1).map((r) => pairs(base, r));
  const head = [
    "post-edit metric (%)",
    ...runs.map((r, i) =>
      `${letters[i]}: ${escapeHtml(r.label)}<br><span class="ci">mean [95 % CI] (n)</span>`
    ),
    ...runs.slice(1).map((_, i) => `${letters[i + 1]} − A<br><span class="ci">paired Δ [95 % CI]</span>`),
  ];
  const pc = (iv: Interval | undefined) =>
    iv && Number.isFinite(iv.value)
      ? `${(100 * iv.value).toFixed(1)}<br><span class="ci">[${(100 * iv.lo).toFixed(1)}, ${
        (100 * iv.hi).toFixed(1)
      }] (${iv.n})</span>`
      : `<span class="na">n/a</span>`;
  const rows = metrics.map((m) => [
    `${swatch(m)}${escapeHtml(m)}`,
    ...post.map((p) => pc(p[m])),
    ...paired.map((p) => (m === "S" ? "–" : diffCell(pairedDiff(p, m as HeadlineMetric)))),
  ]);
  const secs = runs.map((r) => bootstrapMean(r.results.map((x) => x.time)));
  rows.push([
    "edit seconds",
    ...secs.map((iv) =>
      `${iv.value.toFixed(2)}<br><span class="ci">[${iv.lo.toFixed(2)}, ${iv.hi.toFixed(2)}] (${iv.n})</span>`
    ),
    ...paired.map(() => "–"),
  ]);
  rows.push([
    "NaN fallbacks / failed",
    ...runs.map((r) => `${r.summary.diagnostics.fallbacks} / ${r.summary.diagnostics.failed}`),
    ...paired.map(() => "–"),
  ]);

  // per-record paired differences: P(new) after the edit and the ES/PS/NS marks, per run
  const common = base.results.filter((r) =>
    runs.slice(1).every((o) => o.results.some((x) => x.index === r.index && x.caseId === r.caseId))
  );
  const find = (run: RunData, r: RecordResult) =>
    run.results.find((x) => x.index === r.index && x.caseId === r.caseId)!;
  const recRows = common.map((r) => {
    const cells = [String(r.index), escapeHtml(r.request.subject)];
    const pA = rewriteProbs(r, "post").pNew;
    runs.forEach((run) => {
      const x = find(run, r), v = recordValues(x.post);
      cells.push(
        `${pctText(rewriteProbs(x, "post").pNew)}<br>${[v.ES, v.PS, v.NS].map(markShort).join(" ")}`,
      );
    });
    runs.slice(1).forEach((run) => {
      const pB = rewriteProbs(find(run, r), "post").pNew;
      cells.push(pA === undefined || pB === undefined ? `<span class="na">n/a</span>` : signedPts(pB - pA));
    });
    return cells;
  });
  const recHead = [
    "#",
    "subject",
    ...runs.map((_, i) => `${letters[i]}: P(new)<br><span class="ci">ES PS NS</span>`),
    ...runs.slice(1).map((_, i) => `Δ P(new) ${letters[i + 1]} − A`),
  ];
  return [
    `<h2 id="compare">Runs side by side</h2>`,
    `<ul>${
      runs.map((r, i) =>
        `<li><b>${letters[i]}</b>: <a href="#run${i}">${
          escapeHtml(r.label)
        }</a> (${r.summary.num_cases} records)</li>`
      ).join("")
    }</ul>`,
    table(head, rows),
    `<p class="note">Paired Δ: the difference of the post-edit means over the records both runs evaluated (same index and case), with a paired percentile-bootstrap 95 % interval (2,000 resamples of those records, seed 0); <b>*</b> marks an interval that excludes 0.</p>`,
    `<div class="charts">`,
    svgBarChart(
      "Post-edit metrics by run (%)",
      runs.map((r) => r.label),
      metrics.map((m) => ({
        label: m,
        values: post.map((p) => (p[m] ? 100 * p[m].value : undefined)),
        intervals: post.map((p) => (p[m] ? [100 * p[m].lo, 100 * p[m].hi] as [number, number] : undefined)),
      })),
      { yMax: 100, unit: "%", yLabel: "mean over records (%)", colorBy: "group", seriesShort: letters },
    ),
    `</div>`,
    `<h3>Per record, paired (${common.length} records in every run)</h3>`,
    common.length
      ? table(recHead, recRows, { tall: true, leftCols: [1] })
      : `<p class="na">The runs share no records.</p>`,
  ].join("\n");
}

function markShort(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return `<span class="na">n/a</span>`;
  return v === 1 ? `<span class="pass">✓</span>` : v === 0 ? `<span class="fail">✗</span>` : v.toFixed(2);
}

function signedPts(d: number): string {
  const t = `${d > 0 ? "+" : ""}${(100 * d).toFixed(1)} pts`;
  return d > 0 ? `<span class="pass">${t}</span>` : d < 0 ? `<span class="fail">${t}</span>` : t;
}

/**
 * A self-contained HTML report (inline CSS and SVG, no scripts, no external resources): with several
 * runs first the side-by-side comparison, then each run's section.
 */
export function renderHtml(runs: RunData[], opts: { title?: string } = {}): string {
  if (!runs.length) throw new RangeError("renderHtml: no runs");
  const title = opts.title ?? `keg eval: ${runs.map((r) => r.label).join(" vs ")}`;
  const body: string[] = [`<h1>${escapeHtml(title)}</h1>`];
  if (runs.length > 1) body.push(comparisonSection(runs));
  runs.forEach((r, i) => body.push(runSection(r, i)));
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${CSS}</style></head><body>
${body.join("\n")}
<p class="meta">Generated by keg eval. EasyEdit numbers are fractions ×100; ROME numbers follow ROME's summarize.py (×100, rounded half to even). Colours: one per metric throughout (see the swatches); every value is also printed.</p>
</body></html>
`;
}
