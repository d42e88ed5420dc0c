/**
 * The sequential-retention table and curve of a batch run: row b = the model after batch b, column k =
 * the mean rewrite accuracy of batch k's records on that model (the diagonal is "right after").
 * @module
 */
import type { RetentionRow } from "../eval/batch_protocol.ts";

const pct = (x: number) => Number.isFinite(x) ? (100 * x).toFixed(1) : "–";

/** Markdown table of rewrite accuracy per (after batch, batch). */
export function retentionMarkdown(rows: readonly RetentionRow[], batchSize: number): string {
  if (!rows.length) return "";
  const n = rows.length;
  const head = `| after batch | ${Array.from({ length: n }, (_, k) => `b${k}`).join(" | ")} | mean |`;
  const sep = `|---|${"---|".repeat(n + 1)}`;
  const body = rows.map((r) => {
    const cells = Array.from({ length: n }, (_, k) => k < r.rewrite.length ? pct(r.rewrite[k]) : "");
    const mean = r.rewrite.reduce((a, b) => a + b, 0) / r.rewrite.length;
    return `| ${r.after} | ${cells.join(" | ")} | ${pct(mean)} |`;
  });
  return [
    `## Sequential retention (rewrite accuracy %, batches of ${batchSize})`,
    "",
    "Row b: the model after batch b; column k: batch k's records on that model (diagonal: right after).",
    "",
    head,
    sep,
    ...body,
    "",
  ].join("\n");
}

/** An HTML section with the same table and an SVG of each batch's accuracy over the later batches. */
export function retentionHtml(rows: readonly RetentionRow[], batchSize: number): string {
  if (!rows.length) return "";
  const n = rows.length, W = 480, H = 200, pad = 30;
  const x = (b: number) => pad + (n === 1 ? 0 : (b / (n - 1)) * (W - 2 * pad));
  const y = (a: number) => H - pad - a * (H - 2 * pad);
  const lines: string[] = [];
  for (let k = 0; k < n; k++) {
    const pts = rows.slice(k).map((r) => `${x(r.after).toFixed(1)},${y(r.rewrite[k]).toFixed(1)}`);
    const hue = Math.round((k * 300) / Math.max(1, n));
    lines.push(
      `<polyline fill="none" stroke="hsl(${hue},70%,45%)" stroke-width="2" points="${pts.join(" ")}"/>`,
    );
  }
  const table = rows.map((r) =>
    `<tr><td>${r.after}</td>${r.rewrite.map((a) => `<td>${pct(a)}</td>`).join("")}</tr>`
  ).join("");
  return `<section><h2>Sequential retention (batches of ${batchSize})</h2>
<p>Rewrite accuracy of each batch's records on the model after every later batch (one line per batch).</p>
<svg width="${W}" height="${H}" role="img" aria-label="retention"><line x1="${pad}" y1="${y(0)}" x2="${
    W - pad
  }" y2="${y(0)}" stroke="#888"/><line x1="${pad}" y1="${y(0)}" x2="${pad}" y2="${
    y(1)
  }" stroke="#888"/><text x="2" y="${y(1) + 4}" font-size="10">100%</text><text x="8" y="${
    y(0) + 4
  }" font-size="10">0</text>${lines.join("")}</svg>
<table><tr><th>after</th>${rows.map((_, k) => `<th>b${k}</th>`).join("")}</tr>${table}</table></section>`;
}
