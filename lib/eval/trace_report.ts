/**
 * Pictures and tables of causal traces: ROME-style SVG heatmaps (tokens × layers, subject tokens marked,
 * a labelled colour scale per kind), the Figure-2 roll-up as Markdown / HTML tables and line plots, and a
 * self-contained HTML page.
 * @module
 */
import type { TraceKind } from "../edit/trace.ts";
import { escapeHtml, svgLineChart } from "./svg.ts";
import { BUCKET_LABELS, type KindRollup, ROLLUP_BUCKETS } from "./trace_rollup.ts";

/** What a heatmap shows of one traced fact. */
export interface HeatmapFact {
  /** Each token decoded alone. */
  tokens: readonly string[];
  subjectRange: readonly [number, number];
  /** `[token][layer]`. */
  scores: readonly (readonly number[])[];
  lowScore: number;
  highScore: number;
  /** The answer as text, e.g. " Africa". */
  answer: string;
  /** MLP / attention window. */
  window: number;
}

const COLOURS: Record<TraceKind, [string, string]> = {
  hidden: ["#fcfbfd", "#3f007d"], // ROME's Purples
  mlp: ["#f7fcf5", "#00441b"], // Greens
  attn: ["#fff5f0", "#67000d"], // Reds
};

/** The name of a kind as ROME's figures say it. */
export const KIND_TITLES: Readonly<Record<TraceKind, string>> = {
  hidden: "single restored layer",
  mlp: "MLP",
  attn: "Attn",
};

function mix(a: string, b: string, t: number): string {
  const p = (s: string, i: number) => parseInt(s.slice(1 + 2 * i, 3 + 2 * i), 16);
  const c = [0, 1, 2].map((i) => Math.round(p(a, i) + (p(b, i) - p(a, i)) * Math.max(0, Math.min(1, t))));
  return `#${c.map((v) => v.toString(16).padStart(2, "0")).join("")}`;
}

function fmt(v: number, digits = 3): string {
  return Number.isFinite(v) ? v.toFixed(digits) : "–";
}

/** A token as ROME's figures print it (JSON escapes for control characters). */
function tokenLabel(t: string): string {
  return JSON.stringify(t).slice(1, -1);
}

/**
 * A ROME-style heatmap: one row per token (subject tokens marked with `*`), one column per layer, colour
 * from the low score (white) to the cell maximum, with a labelled colour bar.
 */
export function svgTraceHeatmap(kind: TraceKind, f: HeatmapFact): string {
  const T = f.scores.length, Lyr = f.scores[0]?.length ?? 0;
  const labels = f.tokens.map((t, i) =>
    tokenLabel(t) + (i >= f.subjectRange[0] && i < f.subjectRange[1] ? "*" : "")
  );
  const labelW = Math.min(200, 16 + 7 * Math.max(4, ...labels.map((l) => l.length)));
  const cell = 28, top = 44, left = labelW, barW = 14, gap = 18;
  const W = Math.max(390, left + Lyr * cell + gap + barW + 64), H = top + T * cell + 46;
  const vals = f.scores.flat().filter(Number.isFinite);
  const lo = f.lowScore, hi = Math.max(lo + 1e-9, ...vals);
  const [c0, c1] = COLOURS[kind];
  const title = kind === "hidden"
    ? "Impact of restoring state after corrupted input"
    : `Impact of restoring ${KIND_TITLES[kind]} after corrupted input`;
  const xlabel = kind === "hidden"
    ? "single restored layer"
    : `center of interval of ${f.window} restored ${KIND_TITLES[kind]} layers`;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
    `aria-label="${escapeHtml(title)}" font-family="sans-serif" font-size="11" xml:space="preserve">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="12.5" font-weight="bold">${
      escapeHtml(title)
    }</text>`,
    `<text x="${W / 2}" y="32" text-anchor="middle" fill="#444">p(${escapeHtml(f.answer.trim())}): clean ${
      fmt(f.highScore)
    }, corrupted ${fmt(f.lowScore)}</text>`,
  ];
  for (let t = 0; t < T; t++) {
    const y = top + t * cell;
    const subj = t >= f.subjectRange[0] && t < f.subjectRange[1];
    parts.push(
      `<text x="${left - 6}" y="${y + cell / 2 + 4}" text-anchor="end"${subj ? ' font-weight="bold"' : ""}>${
        escapeHtml(labels[t])
      }</text>`,
    );
    for (let l = 0; l < Lyr; l++) {
      const v = f.scores[t][l];
      const fill = Number.isFinite(v) ? mix(c0, c1, (v - lo) / (hi - lo)) : "#dddddd";
      parts.push(
        `<rect x="${left + l * cell}" y="${y}" width="${cell}" height="${cell}" fill="${fill}">` +
          `<title>${escapeHtml(labels[t])} · layer ${l}: ${fmt(v, 4)}</title></rect>`,
      );
    }
  }
  const bottom = top + T * cell;
  for (let l = 0; l < Lyr; l++) {
    parts.push(
      `<text x="${left + l * cell + cell / 2}" y="${bottom + 14}" text-anchor="middle">${l}</text>`,
    );
  }
  parts.push(
    `<text x="${left + (Lyr * cell) / 2}" y="${bottom + 32}" text-anchor="middle">${
      escapeHtml(xlabel)
    }</text>`,
  );
  // Colour bar: low score at the bottom, the maximum at the top.
  const bx = left + Lyr * cell + gap, bh = T * cell;
  parts.push(
    `<defs><linearGradient id="g-${kind}" x1="0" y1="1" x2="0" y2="0"><stop offset="0" stop-color="${c0}"/>` +
      `<stop offset="1" stop-color="${c1}"/></linearGradient></defs>`,
    `<rect x="${bx}" y="${top}" width="${barW}" height="${bh}" fill="url(#g-${kind})" stroke="#888"/>`,
    `<text x="${bx + barW + 4}" y="${top + 8}">${fmt(hi)}</text>`,
    `<text x="${bx + barW + 4}" y="${top + bh}">${fmt(lo)}</text>`,
    `<text transform="translate(${bx + barW + 44} ${top + bh / 2}) rotate(-90)" text-anchor="middle">p(${
      escapeHtml(f.answer.trim())
    })</text>`,
  );
  parts.push("</svg>");
  return parts.join("");
}

/** The best layer of a row (NaN-safe). */
function argmax(xs: readonly number[]): number {
  let best = -1;
  xs.forEach((v, i) => {
    if (Number.isFinite(v) && (best < 0 || v > xs[best])) best = i;
  });
  return best;
}

/** The title line of a roll-up table, as in the oracle READMEs. */
export function rollupTitle(kind: TraceKind, r: KindRollup, window: number): string {
  const name = kind === "hidden"
    ? "Hidden state (one layer restored)"
    : `${kind === "mlp" ? "MLP" : "Attention"}, window ${window}`;
  return `${name} — n = ${r.n_facts}, mean high ${r.high_score.toFixed(4)}, mean low ${
    r.low_score.toFixed(4)
  }, total effect ${r.total_effect.toFixed(4)}`;
}

/** A roll-up as a Markdown table (bold = the best layer of the row). */
export function rollupMarkdown(kind: TraceKind, r: KindRollup, window: number): string {
  const L = r.aie.last.length;
  const lines = [
    `**${rollupTitle(kind, r, window)}**`,
    "",
    `| token bucket (rows) | ${Array.from({ length: L }, (_, l) => `L${l}`).join(" | ")} |`,
    `|---|${"---|".repeat(L)}`,
  ];
  for (const b of ROLLUP_BUCKETS) {
    const row = r.aie[b], best = argmax(row);
    const cells = row.map((v, l) => (l === best ? `**${fmt(v)}**` : fmt(v)));
    lines.push(`| ${BUCKET_LABELS[b]} (${r.n_rows[b]}) | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

function rollupHtmlTable(kind: TraceKind, r: KindRollup, window: number): string {
  const L = r.aie.last.length;
  const head = Array.from({ length: L }, (_, l) => `<th>L${l}</th>`).join("");
  const rows = ROLLUP_BUCKETS.map((b) => {
    const row = r.aie[b], best = argmax(row);
    const cells = row.map((v, l) => `<td${l === best ? ' class="best"' : ""}>${fmt(v)}</td>`).join("");
    return `<tr><th>${escapeHtml(BUCKET_LABELS[b])} (${r.n_rows[b]})</th>${cells}</tr>`;
  }).join("");
  return `<h3>${escapeHtml(rollupTitle(kind, r, window))}</h3><div class="scroll"><table>` +
    `<thead><tr><th>token bucket (rows)</th>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

/** The Figure-2 line plot of a roll-up: AIE per layer, one line per token bucket. */
export function rollupLinePlot(kind: TraceKind, r: KindRollup, window: number): string {
  const series = ROLLUP_BUCKETS.map((b) => ({
    name: BUCKET_LABELS[b],
    points: r.aie[b].map((v, l) => [l, v] as [number, number]),
  }));
  const top = Math.max(0.05, ...ROLLUP_BUCKETS.flatMap((b) => r.aie[b]).filter(Number.isFinite));
  const what = kind === "hidden"
    ? "hidden state"
    : `${kind === "mlp" ? "MLP" : "attention"} (window ${window})`;
  return svgLineChart(`Average indirect effect of the ${what}`, series, {
    xLabel: "layer",
    yMax: Math.ceil(top * 20) / 20,
  });
}

/** Everything the HTML page shows. */
export interface TracePage {
  title: string;
  /** Lines of settings (model, precision, noise, …). */
  settings: string[];
  rollups: Partial<Record<TraceKind, KindRollup>>;
  window: number;
  /** Heatmaps to show: a caption and its SVGs. */
  facts: { caption: string; svgs: string[] }[];
  /** A paragraph about the suggested layer, if any. */
  suggestion?: string;
  /** Notes (skipped records, interruptions). */
  notes?: string[];
}

const CSS = `body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:16px;color:#222}
h1{font-size:1.4em}h1,li,p{overflow-wrap:anywhere}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th:first-child{text-align:left}td.best{font-weight:bold;background:#eef}
.scroll{overflow-x:auto;max-width:100%}svg{max-width:100%;height:auto}
.figs{display:flex;flex-wrap:wrap;gap:12px}.fact{margin-bottom:1.2em}
.chart .title{font-size:13px;font-weight:bold}.chart .tick{font-size:11px;fill:#444}
.chart .grid{stroke:#e5e5e5}.chart .axis{stroke:#999}.chart .axis-title{font-size:11px;fill:#444}
.chart .val{display:none}.chart .legend{font-size:11px}ul{padding-left:1.2em}`;

/** A self-contained HTML page: settings, roll-up tables and plots, heatmaps. */
export function renderTraceHtml(p: TracePage): string {
  const parts = [
    `<!doctype html><html lang="en"><head><meta charset="utf-8">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${escapeHtml(p.title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${escapeHtml(p.title)}</h1>`,
    `<ul>${p.settings.map((s) => `<li>${escapeHtml(s)}</li>`).join("")}</ul>`,
  ];
  if (p.suggestion) parts.push(`<p><strong>${escapeHtml(p.suggestion)}</strong></p>`);
  const kinds = (["hidden", "mlp", "attn"] as const).filter((k) => p.rollups[k]);
  if (kinds.length) {
    parts.push(
      `<h2>Average indirect effect (ROME Figure 2)</h2>`,
      `<p>Entry = mean restored probability of the bucket − mean corrupted probability over the facts.</p>`,
    );
    for (const k of kinds) {
      parts.push(
        rollupHtmlTable(k, p.rollups[k]!, p.window),
        `<div class="scroll">${rollupLinePlot(k, p.rollups[k]!, p.window)}</div>`,
      );
    }
  }
  if (p.facts.length) {
    parts.push(`<h2>Causal traces</h2>`);
    for (const f of p.facts) {
      parts.push(
        `<div class="fact"><h3>${escapeHtml(f.caption)}</h3><div class="figs">${
          f.svgs.map((s) => `<div class="scroll">${s}</div>`).join("")
        }</div></div>`,
      );
    }
  }
  if (p.notes?.length) {
    parts.push(`<h2>Notes</h2><ul>${p.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>`);
  }
  parts.push(`</body></html>`);
  return parts.join("\n");
}
