/**
 * The side-by-side comparison of several runs in the HTML report: a column per run (mean, 95 % bootstrap
 * interval, n), the paired difference of each later run against the first over the records both have
 * (paired percentile bootstrap), a grouped chart, and the per-record paired table.
 * @module
 */
import type { RecordResult } from "./protocol.ts";
import type { RunData } from "./results.ts";
import { bootstrapMean, type Interval, type Item, pairedBootstrap } from "./bootstrap.ts";
import { HEADLINE, headlineIntervals, type HeadlineMetric, metricItem, recordValues } from "./summary.ts";
import { escapeHtml, svgBarChart } from "./svg.ts";
import { markShort, pctText, rewriteProbs, signedPts, swatch, table } from "./report_parts.ts";

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

/** The comparison section of several runs. */
export function comparisonSection(runs: RunData[]): string {
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
    `<span class="nw">${swatch(m)}${escapeHtml(m)}</span>`,
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
