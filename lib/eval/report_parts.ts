/**
 * @internal Building blocks of the HTML report: the stylesheet, tables in scroll containers, metric
 * swatches, interval cells, pass/fail marks and probabilities as text.
 * @module
 */
import type { RecordResult } from "./protocol.ts";
import type { Interval } from "./bootstrap.ts";
import { type Phase, phaseOf } from "./summary.ts";
import type { Table } from "./tables.ts";
import { escapeHtml, metricColor } from "./svg.ts";

/** The report's stylesheet (inline). */
export const CSS: string = `*{box-sizing:border-box}
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
export function table(
  head: string[],
  rows: string[][],
  opts: { tall?: boolean; leftCols?: number[] } = {},
): string {
  const l = new Set(opts.leftCols ?? []);
  const cls = (i: number) => (l.has(i) ? ' class="l"' : "");
  return `<div class="scroll${opts.tall ? " tall" : ""}"><table><thead><tr>${
    head.map((h, i) => `<th${cls(i)}>${h}</th>`).join("")
  }</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join("")}</tr>`).join("")
  }</tbody></table></div>`;
}

/** A text table (cells escaped) in a scroll container. */
export function textTable(t: Table): string {
  return table(t.head.map(escapeHtml), t.rows.map((r) => r.map(escapeHtml)));
}

/** A small square in a metric's colour. */
export function swatch(m: string): string {
  return `<span class="sw" style="background:${metricColor(m)}"></span>`;
}

/** "82.0 [65.0, 95.0]" for an interval in %. */
export function ciCell(iv: Interval | undefined, digits = 1): string {
  if (!iv || !Number.isFinite(iv.value)) return `<span class="na">n/a</span>`;
  return `${iv.value.toFixed(digits)}<br><span class="ci">[${iv.lo.toFixed(digits)}, ${
    iv.hi.toFixed(digits)
  }]</span>`;
}

/** A per-record 0..1 value as a mark: ✓ pass / ✗ fail / fraction / n/a. */
export function mark(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return `<span class="na">n/a</span>`;
  if (v === 1) return `<span class="pass">✓ pass</span>`;
  if (v === 0) return `<span class="fail">✗ fail</span>`;
  return `${v.toFixed(2)}`;
}

/** exp(−NLL), or undefined for a missing or non-finite NLL. */
export function prob(nll: number | undefined): number | undefined {
  return nll === undefined || !Number.isFinite(nll) ? undefined : Math.exp(-nll);
}

/** A probability as a percentage (exponent notation below 0.1 %), or "n/a". */
export function pctText(p: number | undefined): string {
  if (p === undefined) return `<span class="na">n/a</span>`;
  return p >= 0.001 || p === 0 ? `${(100 * p).toFixed(1)}%` : `${(100 * p).toExponential(1)}%`;
}

/** P(new), P(true) on the rewrite prompt (per-token geometric-mean probability) of a phase. */
export function rewriteProbs(r: RecordResult, phase: Phase): { pNew?: number; pTrue?: number } {
  const x = phaseOf(r, phase)?.rewritePromptsProbs?.[0];
  return { pNew: prob(x?.targetNew), pTrue: prob(x?.targetTrue) };
}

/** A per-record 0..1 value as ✓ / ✗ / fraction / n/a. */
export function markShort(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return `<span class="na">n/a</span>`;
  return v === 1 ? `<span class="pass">✓</span>` : v === 0 ? `<span class="fail">✗</span>` : v.toFixed(2);
}

/** A difference of probabilities as signed percentage points, coloured by sign. */
export function signedPts(d: number): string {
  const r = Math.round(1000 * d) / 10; // points, 1 decimal: what is printed decides the sign
  const t = `${r > 0 ? "+" : ""}${r === 0 ? "0.0" : r.toFixed(1)} pts`;
  return r > 0 ? `<span class="pass">${t}</span>` : r < 0 ? `<span class="fail">${t}</span>` : t;
}
