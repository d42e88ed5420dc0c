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
import { HEADLINE, type Phase, phaseOf, recordValues, running } from "./summary.ts";
import { diagnosticsTable, easyEditTable, num, romeTable } from "./tables.ts";
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
import { ciCell, CSS, mark, pctText, rewriteProbs, swatch, table, textTable } from "./report_parts.ts";
import { comparisonSection } from "./report_compare.ts";

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
      `<span class="nw">${swatch(m)}${escapeHtml(m)}</span>`,
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
