/**
 * Results on disk and what is made of them, re-exported from one place: the run directory and its JSON
 * Lines (lib/eval/results.ts), the summary with bootstrap intervals (summary.ts, bootstrap.ts), the text
 * tables and `summary.md` (tables.ts), the SVG charts (svg.ts) and the self-contained `report.html`
 * (report_html.ts).
 * @module
 */
export * from "./results.ts";
export * from "./summary.ts";
export * from "./bootstrap.ts";
export * from "./tables.ts";
export * from "./svg.ts";
export * from "./report_html.ts";
