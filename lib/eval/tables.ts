/**
 * The summary as text tables: EasyEdit's layout (pre/post rewrite, rephrase, locality, portability
 * accuracy), ROME's ES/PS/NS/S beside it, the edits' diagnostics, and the markdown `summary.md`.
 * @module
 */
import type { Summary } from "./metrics.ts";
import type { RunInfo } from "./results.ts";
import type { EvalSummary } from "./summary.ts";

/** A fraction as a percentage with 2 decimals, or "–". */
export function pct(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "–" : (100 * x).toFixed(2);
}

/** An already-×100 ROME value (or any number) with `digits` decimals, or "–". */
export function num(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** A table of text cells. */
export interface Table {
  /** Column headers. */
  head: string[];
  /** Rows of cells. */
  rows: string[][];
}

/** EasyEdit's summary table (%), one row per phase. */
export function easyEditTable(s: EvalSummary): Table {
  const phases: [string, Summary["easyedit"]["post"] | undefined][] = [
    ["pre", s.easyedit.pre],
    ["post", s.easyedit.post],
  ];
  if (s.final) phases.push(["final (all edits)", s.final.easyedit]);
  const locKeys = new Set<string>(), portKeys = new Set<string>();
  for (const [, p] of phases) {
    for (const k of Object.keys(p?.locality ?? {})) locKeys.add(k);
    for (const k of Object.keys(p?.portability ?? {})) portKeys.add(k);
  }
  const fluency = phases.some(([, p]) => p?.fluency !== undefined);
  const multiHop = phases.some(([, p]) => p?.multi_hop_acc !== undefined);
  type Phase = Summary["easyedit"]["post"] | undefined;
  const cols: [string, (p: Phase) => string][] = [
    ["rewrite_acc", (p) => pct(p?.rewrite_acc)],
    ["rephrase_acc", (p) => pct(p?.rephrase_acc)],
  ];
  if (locKeys.size) {
    for (const k of [...locKeys].sort()) {
      cols.push([`locality ${k}`, (p) => pct(p?.locality?.[k])]);
    }
  } else cols.push(["locality", () => "–"]);
  if (portKeys.size) {
    for (const k of [...portKeys].sort()) cols.push([`portability ${k}`, (p) => pct(p?.portability?.[k])]);
  } else cols.push(["portability", () => "–"]);
  if (fluency) cols.push(["fluency", (p) => num(p?.fluency)]);
  if (multiHop) cols.push(["multi_hop_acc", (p) => pct(p?.multi_hop_acc)]);
  const head = ["phase", ...cols.map((c) => c[0])];
  const rows = phases.map(([name, p]) => [name, ...cols.map(([, f]) => f(p))]);
  return { head, rows };
}

/** ROME's summary table (×100), one row per phase. */
export function romeTable(s: EvalSummary): Table {
  const zsre = Object.keys(s.rome).some((k) => k.endsWith("_acc")) &&
    !Object.keys(s.rome).some((k) => k.endsWith("_success"));
  const kind = zsre ? "acc" : "success";
  const phases: [string, string, Record<string, [number, number]>][] = [
    ["pre", "pre", s.rome],
    ["post", "post", s.rome],
  ];
  if (s.final) phases.push(["final (all edits)", "final", s.final.rome]);
  const head = zsre
    ? ["phase", "Efficacy", "Paraphrase", "Specificity", "S"]
    : ["phase", "ES", "PS", "NS", "S", "EM", "PM", "NM", "GE"];
  const rows = phases.map(([name, p, r]) => {
    const g = (k: string) => r[`${p}_${k}`]?.[0];
    const row = [
      name,
      num(g(`rewrite_${kind}`)),
      num(g(`paraphrase_${kind}`)),
      num(g(`neighborhood_${kind}`)),
      num(g("score")),
    ];
    if (!zsre) {
      row.push(
        num(g("rewrite_diff")),
        num(g("paraphrase_diff")),
        num(g("neighborhood_diff")),
        num(g("ngram_entropy")),
      );
    }
    return row;
  });
  return { head, rows };
}

/** Bytes as B / KiB / MiB / GiB. */
export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** The edits' diagnostics, one row. */
export function diagnosticsTable(s: EvalSummary): Table {
  const d = s.diagnostics;
  return {
    head: [
      "edits",
      "failed",
      "NaN fallbacks",
      "warnings",
      "division factor min / median / max",
      "‖ΔW‖/‖W‖ mean / max",
      "edit s (mean ± std)",
      "eval s (mean ± std)",
      "peak GPU memory",
    ],
    rows: [[
      String(d.edits),
      String(d.failed),
      String(d.fallbacks),
      String(d.warnings),
      `${num(d.divisionFactor.min, 3)} / ${num(d.divisionFactor.median, 3)} / ${
        num(d.divisionFactor.max, 3)
      }`,
      `${num(d.dWRel.mean, 3)} / ${num(d.dWRel.max, 3)}`,
      `${num(d.timing.editSeconds[0], 2)} ± ${num(d.timing.editSeconds[1], 2)}`,
      `${num(d.timing.evalSeconds[0], 2)} ± ${num(d.timing.evalSeconds[1], 2)}`,
      formatBytes(d.timing.peakBytes),
    ]],
  };
}

function mdTable(t: Table): string {
  const esc = (c: string) => c.replaceAll("|", "\\|");
  return [
    `| ${t.head.map(esc).join(" | ")} |`,
    `|${t.head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/**
 * The summary as markdown: EasyEdit's table (pre/post rewrite_acc, rephrase_acc, locality, portability;
 * percentages), ROME's (ES/PS/NS/S, EM/PM/NM, GE; ROME's ×100 values) and the diagnostics.
 */
export function renderMarkdown(summary: EvalSummary, run?: RunInfo | null): string {
  const lines = [
    `# keg eval${run ? `: ${run.model.split("/").pop()} on ${run.data.split("/").pop()}` : ""}`,
    "",
  ];
  if (run) {
    lines.push(
      `${summary.num_cases} records · ${run.format} · ${run.precision} · ${run.protocol} · ${run.update} · hparams \`${run.hparams}\``,
      "",
    );
  } else lines.push(`${summary.num_cases} records`, "");
  lines.push("## EasyEdit metrics (%)", "", mdTable(easyEditTable(summary)), "");
  lines.push("## ROME CounterFact metrics (×100)", "", mdTable(romeTable(summary)), "");
  lines.push("## Edits", "", mdTable(diagnosticsTable(summary)), "");
  return lines.join("\n");
}
