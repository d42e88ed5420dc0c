/**
 * Results on disk and what is made of them: the JSON Lines of per-record results (exact round trip, a torn
 * last line ignored), the summary (lib/eval/metrics.ts's `summarize` plus the edits' diagnostics), the
 * markdown table in EasyEdit's layout with ROME's ES/PS/NS/S beside it, and a self-contained HTML report
 * with inline SVG plots (pre vs post bars, per-record distributions, the running-accuracy curve over the
 * edits, and several runs side by side, e.g. f32 vs f16).
 *
 * A run directory holds `run.json` ({@link RunInfo}), `results.jsonl` (one {@link RecordResult} per line),
 * for sequential runs `final.jsonl` ({@link FinalResult} lines), and the rendered `summary.json`,
 * `summary.md` and `report.html`.
 * @module
 */
import {
  efficacyScore,
  neighborhoodScore,
  paraphraseScore,
  type PhaseMetrics,
  type RecordMetrics,
  summarize,
  type Summary,
} from "./metrics.ts";
import type { FinalResult, RecordResult } from "./protocol.ts";

// ---------------------------------------------------------------------------------------------------------
// JSON Lines

/** File names inside a run directory. */
export const RUN_FILES = {
  run: "run.json",
  results: "results.jsonl",
  final: "final.jsonl",
  summaryJson: "summary.json",
  summaryMd: "summary.md",
  report: "report.html",
} as const;

/** One JSON line for a value: non-finite numbers become `{"$f": "NaN"}` (JSON has no NaN), so it reads back exactly. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? { $f: String(v) } : v),
  );
}

/** Parses a line written by {@link toJsonLine}. */
export function fromJsonLine(line: string): unknown {
  return JSON.parse(line, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$f" && typeof v.$f === "string") return Number(v.$f);
    }
    return v;
  });
}

/** What {@link parseJsonl} read. */
export interface JsonlContent {
  /** The values of the complete lines. */
  values: unknown[];
  /** Bytes (UTF-8) of the complete lines, i.e. where an append should continue. */
  validBytes: number;
  /** Whether a trailing incomplete line (a write cut short) was ignored. */
  partial: boolean;
}

/**
 * Parses JSON Lines, ignoring a trailing line without its newline (a run killed mid-write). A complete line
 * that is not JSON is an error naming `file:line`.
 */
export function parseJsonl(text: string, file: string): JsonlContent {
  const values: unknown[] = [];
  const enc = new TextEncoder();
  const end = text.lastIndexOf("\n") + 1;
  const lines = text.slice(0, end).split("\n");
  lines.pop(); // the empty string after the last newline
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    try {
      values.push(fromJsonLine(line));
    } catch (e) {
      throw new Error(
        `${file}:${i + 1}: not a JSON line (${(e as Error).message}); remove the line to resume`,
      );
    }
  }
  return {
    values,
    validBytes: enc.encode(text.slice(0, end)).length,
    partial: text.slice(end).trim() !== "",
  };
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Reads a JSON Lines file (missing → empty). */
export async function readJsonl(path: string): Promise<JsonlContent> {
  const text = await readText(path);
  return text === null ? { values: [], validBytes: 0, partial: false } : parseJsonl(text, path);
}

// ---------------------------------------------------------------------------------------------------------
// Runs

/** `run.json`: what a run directory holds. */
export interface RunInfo {
  /** Format version (1). */
  version: number;
  /** Hash of everything that determines the results except the record selection (shard, limit). */
  key: string;
  /** The hyper-parameter file. */
  hparams: string;
  /** The hyper-parameters as used (after overrides). */
  hparamsValues: Record<string, unknown>;
  /** The model directory. */
  model: string;
  /** The model's content fingerprint. */
  fingerprint: string;
  /** The dataset file. */
  data: string;
  /** sha256 of the dataset file. */
  dataSha256: string;
  /** The dataset format. */
  format: string;
  /** Storage precision. */
  precision: string;
  /** The protocol. */
  protocol: "independent" | "sequential";
  /** The update variant. */
  update: string;
  /** Where C came from (a file, "computed: …", or "identity"). */
  stats: string;
  /** Fluency settings, or null. */
  fluency: Record<string, number> | null;
  /** `--limit`, or null for the whole dataset. */
  limit: number | null;
  /** `--shard i/n`, or null. */
  shard: { index: number; count: number } | null;
  /** Records in this run's selection. */
  records: number;
  /** Merged runs: the shard directories. */
  mergedFrom?: string[];
  /** ISO time of the (last) start. */
  created: string;
}

/** Whether record `index` belongs to a run's selection (its limit and shard). */
export function inSelection(info: Pick<RunInfo, "limit" | "shard">, index: number): boolean {
  if (info.limit !== null && index >= info.limit) return false;
  return !info.shard || index % info.shard.count === info.shard.index;
}

/** A run as the report sees it. */
export interface RunData {
  /** Display name. */
  label: string;
  /** Its directory, if read from one. */
  dir?: string;
  /** Its `run.json`, if any. */
  info: RunInfo | null;
  /** Results in index order, `final` attached for sequential runs. */
  results: RecordResult[];
  /** The summary of `results`. */
  summary: EvalSummary;
}

/**
 * Attaches final metrics (sequential runs) to results: only those computed on a model holding exactly
 * `editsApplied` edits count. Returns new result objects in index order.
 */
export function attachFinal(
  results: readonly RecordResult[],
  finals: readonly FinalResult[],
  editsApplied: number,
): RecordResult[] {
  const byIndex = new Map<number, FinalResult>();
  for (const f of finals) if (f.editsApplied === editsApplied) byIndex.set(f.index, f);
  return [...results].sort((a, b) => a.index - b.index).map((r) => {
    const f = byIndex.get(r.index);
    const { final: _old, ...rest } = r;
    return f ? { ...rest, final: f.final } : rest;
  });
}

/** Keeps the last result per index (a record redone after a torn write counts once), in index order. */
export function uniqueByIndex(results: readonly RecordResult[]): RecordResult[] {
  const m = new Map<number, RecordResult>();
  for (const r of results) m.set(r.index, r);
  return [...m.values()].sort((a, b) => a.index - b.index);
}

/** A display label for a run: its directory name with precision and protocol. */
export function runLabel(info: RunInfo | null, dir?: string): string {
  const name = dir ? dir.replace(/\/+$/, "").split("/").pop() || dir : "run";
  return info ? `${name} (${info.precision}, ${info.protocol})` : name;
}

/**
 * Reads a run directory: `run.json`, the results of its selection (in index order, one per index) and
 * for sequential runs the final metrics. Throws when the directory holds no run.
 */
export async function readRunDir(dir: string): Promise<RunData> {
  const infoText = await readText(`${dir}/${RUN_FILES.run}`);
  const info = infoText === null ? null : JSON.parse(infoText) as RunInfo;
  const res = await readJsonl(`${dir}/${RUN_FILES.results}`);
  if (info === null && res.values.length === 0) {
    throw new Error(`${dir}: no run here (no ${RUN_FILES.run}, no results)`);
  }
  let results = uniqueByIndex(res.values as RecordResult[]);
  if (info) results = results.filter((r) => inSelection(info, r.index));
  if (info?.protocol === "sequential") {
    const fin = await readJsonl(`${dir}/${RUN_FILES.final}`);
    results = attachFinal(results, fin.values as FinalResult[], info.records);
  }
  return { label: runLabel(info, dir), dir, info, results, summary: buildSummary(results) };
}

// ---------------------------------------------------------------------------------------------------------
// Summary

/** Summary of the edits' diagnostics. Everything but `timing` is the same in every run of the same records. */
export interface DiagnosticsSummary {
  /** Edits made (MQuAKE cases make several per record). */
  edits: number;
  /** Records whose edit failed. */
  failed: number;
  /** Edits with a NaN/inf fallback to f32 activations. */
  fallbacks: number;
  /** Edits with warnings. */
  warnings: number;
  /** Division factor k·u over the edits. */
  divisionFactor: { min: number; median: number; max: number };
  /** ‖ΔW‖/‖W‖ over the edits. */
  dWRel: { mean: number; max: number };
  /** Run-dependent: seconds per record's edit(s) and evaluation [mean, std], peak GPU bytes. */
  timing: { editSeconds: [number, number]; evalSeconds: [number, number]; peakBytes: number };
}

/** The summary of a run: EasyEdit's and ROME's summaries, the final-model summary of sequential runs, diagnostics. */
export interface EvalSummary extends Summary {
  /** Sequential runs: summaries on the final model (EasyEdit's sequential "post"); ROME keys as `final_*`. */
  final?: {
    num_cases: number;
    easyedit: Summary["easyedit"]["post"];
    rome: Record<string, [number, number]>;
  };
  /** Diagnostics of the edits. */
  diagnostics: DiagnosticsSummary;
}

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

function meanStd(xs: readonly number[]): [number, number] {
  const m = mean(xs);
  return [m, Math.sqrt(mean(xs.map((x) => (x - m) ** 2)))];
}

function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * Summarises results (in the order given; pass them in index order): metrics.summarize over
 * {caseId, time, pre, post}, for sequential results also over {pre, post: final}, and the diagnostics.
 */
export function buildSummary(results: readonly RecordResult[]): EvalSummary {
  const recs: RecordMetrics[] = results.map((r) => ({
    caseId: r.caseId,
    time: r.time,
    pre: r.pre,
    post: r.post,
  }));
  const out: EvalSummary = { ...summarize(recs), diagnostics: diagnosticsSummary(results) };
  const withFinal = results.filter((r) => r.final);
  if (withFinal.length) {
    const s = summarize(withFinal.map((r) => ({ caseId: r.caseId, post: r.final })));
    const rome: Record<string, [number, number]> = {};
    for (const [k, v] of Object.entries(s.rome)) if (k.startsWith("post_")) rome[`final_${k.slice(5)}`] = v;
    out.final = { num_cases: withFinal.length, easyedit: s.easyedit.post, rome };
  }
  return out;
}

function diagnosticsSummary(results: readonly RecordResult[]): DiagnosticsSummary {
  const edits = results.flatMap((r) => r.edits);
  const ok = edits.filter((e) => e.error === undefined);
  const div = ok.map((e) => e.divisionFactor).filter(Number.isFinite);
  const rel = ok.map((e) => e.dWRel).filter(Number.isFinite);
  const peaks = results.flatMap((r) => r.memory.map((m) => m.peakBytes));
  return {
    edits: edits.length,
    failed: results.filter((r) => r.error !== undefined).length,
    fallbacks: edits.filter((e) => e.fallbacks.length).length,
    warnings: edits.filter((e) => e.warnings.length).length,
    divisionFactor: {
      min: div.length ? Math.min(...div) : NaN,
      median: median(div),
      max: div.length ? Math.max(...div) : NaN,
    },
    dWRel: { mean: mean(rel), max: rel.length ? Math.max(...rel) : NaN },
    timing: {
      editSeconds: meanStd(results.map((r) => r.time)),
      evalSeconds: meanStd(results.map((r) => r.evalSeconds)),
      peakBytes: peaks.length ? Math.max(...peaks) : 0,
    },
  };
}

/** JSON text of a summary (NaN → null, as JSON has no NaN), 2-space indented. */
export function summaryJson(summary: EvalSummary, run?: RunInfo | null): string {
  const body = run ? { ...summary, run: runBrief(run) } : summary;
  return JSON.stringify(body, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n";
}

function runBrief(run: RunInfo): Record<string, unknown> {
  return {
    hparams: run.hparams,
    model: run.model,
    data: run.data,
    format: run.format,
    precision: run.precision,
    protocol: run.protocol,
    update: run.update,
    stats: run.stats,
    limit: run.limit,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Tables

/** A fraction as a percentage with 2 decimals, or "–". */
function pct(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "–" : (100 * x).toFixed(2);
}

/** An already-×100 ROME value, or "–". */
function num(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

interface Table {
  head: string[];
  rows: string[][];
}

function easyEditTable(s: EvalSummary): Table {
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

function romeTable(s: EvalSummary): Table {
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

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

function diagnosticsTable(s: EvalSummary): Table {
  const d = s.diagnostics;
  return {
    head: [
      "edits",
      "failed",
      "NaN fallbacks",
      "warnings",
      "division factor min / median",
      "‖ΔW‖/‖W‖ mean / max",
      "edit s",
      "eval s",
      "peak GPU memory",
    ],
    rows: [[
      String(d.edits),
      String(d.failed),
      String(d.fallbacks),
      String(d.warnings),
      `${num(d.divisionFactor.min, 3)} / ${num(d.divisionFactor.median, 3)}`,
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

// ---------------------------------------------------------------------------------------------------------
// SVG

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];

/** Escapes text for HTML / SVG. */
export function escapeHtml(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

/** One group of a grouped bar chart. */
export interface BarGroup {
  /** The group's label (x axis). */
  label: string;
  /** One value per series (NaN / undefined: no bar). */
  values: (number | undefined)[];
}

/** Lays out legend entries left to right, wrapping at `width`; returns the SVG parts (at y offset 0) and rows. */
function legend(
  names: string[],
  x0: number,
  width: number,
): { parts: (y: number) => string[]; rows: number } {
  const pos: [number, number][] = [];
  let x = x0, row = 0;
  for (const n of names) {
    const w = 24 + 6.5 * n.length;
    if (x > x0 && x + w > width) x = x0, row++;
    pos.push([x, row]);
    x += w;
  }
  return {
    rows: names.length ? row + 1 : 0,
    parts: (y: number) =>
      names.flatMap((n, i) => {
        const [lx, r] = pos[i], ly = y + r * 18;
        return [
          `<rect x="${lx.toFixed(1)}" y="${ly}" width="10" height="10" fill="${
            PALETTE[i % PALETTE.length]
          }"/>`,
          `<text x="${(lx + 14).toFixed(1)}" y="${ly + 9}" class="tick">${escapeHtml(n)}</text>`,
        ];
      }),
  };
}

/** A grouped bar chart as an SVG element. Values are drawn on a [0, yMax] axis. */
export function svgBarChart(
  title: string,
  series: string[],
  groups: BarGroup[],
  opts: { yMax?: number; unit?: string; width?: number } = {},
): string {
  const W = opts.width ?? Math.max(420, 60 + groups.length * Math.max(84, series.length * 18 + 24));
  const L = 48, R = 12, T = 28;
  const leg = legend(series, L, W - R);
  const B = 30 + 18 * leg.rows, H = 200 + B;
  const vals = groups.flatMap((g) => g.values).filter((v): v is number =>
    v !== undefined && Number.isFinite(v)
  );
  const yMax = opts.yMax ?? (vals.length ? Math.max(...vals) * 1.1 || 1 : 1);
  const y = (v: number) => T + (H - T - B) * (1 - Math.max(0, Math.min(v, yMax)) / yMax);
  const gw = (W - L - R) / Math.max(1, groups.length);
  const bw = Math.min(22, (gw - 10) / Math.max(1, series.length));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      escapeHtml(title)
    }">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" class="title">${escapeHtml(title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`,
      `<text x="${L - 4}" y="${y(v) + 4}" text-anchor="end" class="tick">${fmtTick(v)}${
        opts.unit ?? ""
      }</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const x0 = L + gi * gw + (gw - bw * series.length) / 2;
    g.values.forEach((v, si) => {
      if (v === undefined || !Number.isFinite(v)) return;
      const x = x0 + si * bw;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${
          (y(0) - y(v)).toFixed(1)
        }" fill="${PALETTE[si % PALETTE.length]}"><title>${
          escapeHtml(`${g.label} · ${series[si]}: ${fmtTick(v)}${opts.unit ?? ""}`)
        }</title></rect>`,
      );
    });
    parts.push(
      `<text x="${(L + gi * gw + gw / 2).toFixed(1)}" y="${H - B + 14}" text-anchor="middle" class="tick">${
        escapeHtml(g.label)
      }</text>`,
    );
  });
  parts.push(...leg.parts(H - B + 26), `</svg>`);
  return parts.join("");
}

/** A histogram of values as an SVG element; `domain` fixes the range (default: the values' range). */
export function svgHistogram(
  title: string,
  values: readonly number[],
  opts: { bins?: number; domain?: [number, number]; color?: string } = {},
): string {
  const W = 300, H = 180, L = 36, R = 10, T = 26, B = 30;
  const v = values.filter(Number.isFinite);
  const bins = opts.bins ?? 10;
  let [lo, hi] = opts.domain ?? (v.length ? [Math.min(...v), Math.max(...v)] : [0, 1]);
  if (!(hi > lo)) [lo, hi] = [lo - 0.5, hi + 0.5];
  const counts = new Array(bins).fill(0);
  for (const x of v) counts[Math.min(bins - 1, Math.max(0, Math.floor(((x - lo) / (hi - lo)) * bins)))]++;
  const cMax = Math.max(1, ...counts);
  const bw = (W - L - R) / bins;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      escapeHtml(title)
    }">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" class="title">${
      escapeHtml(title)
    } (n=${v.length})</text>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" class="axis"/>`,
    `<text x="${L - 4}" y="${T + 8}" text-anchor="end" class="tick">${cMax}</text>`,
  ];
  counts.forEach((c, i) => {
    const h = ((H - T - B) * c) / cMax;
    parts.push(
      `<rect x="${(L + i * bw + 1).toFixed(1)}" y="${(H - B - h).toFixed(1)}" width="${
        (bw - 2).toFixed(1)
      }" height="${h.toFixed(1)}" fill="${opts.color ?? PALETTE[0]}"><title>${
        fmtTick(lo + (i * (hi - lo)) / bins)
      } – ${fmtTick(lo + ((i + 1) * (hi - lo)) / bins)}: ${c}</title></rect>`,
    );
  });
  parts.push(
    `<text x="${L}" y="${H - B + 14}" text-anchor="start" class="tick">${fmtTick(lo)}</text>`,
    `<text x="${W - R}" y="${H - B + 14}" text-anchor="end" class="tick">${fmtTick(hi)}</text>`,
    `</svg>`,
  );
  return parts.join("");
}

/** A line series. */
export interface LineSeries {
  /** Legend name. */
  name: string;
  /** [x, y] points in x order. */
  points: [number, number][];
}

/** A line chart as an SVG element, y on [0, yMax] (default 1). */
function svgLineChart(
  title: string,
  series: LineSeries[],
  opts: { xLabel?: string; yMax?: number } = {},
): string {
  const W = 640, L = 44, R = 14, T = 28;
  const leg = legend(series.map((s) => s.name), L, W - R);
  const B = 30 + 18 * leg.rows, H = 220 + B;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const yMax = opts.yMax ?? 1;
  const X = (x: number) => L + ((W - L - R) * (x - x0)) / (x1 > x0 ? x1 - x0 : 1);
  const Y = (y: number) => T + (H - T - B) * (1 - Math.max(0, Math.min(y, yMax)) / yMax);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      escapeHtml(title)
    }">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" class="title">${escapeHtml(title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}" class="grid"/>`,
      `<text x="${L - 4}" y="${Y(v) + 4}" text-anchor="end" class="tick">${fmtTick(v)}</text>`,
    );
  }
  parts.push(
    `<text x="${L}" y="${H - B + 14}" class="tick">${fmtTick(x0)}</text>`,
    `<text x="${W - R}" y="${H - B + 14}" text-anchor="end" class="tick">${fmtTick(x1)}</text>`,
    `<text x="${(L + W - R) / 2}" y="${H - B + 14}" text-anchor="middle" class="tick">${
      escapeHtml(opts.xLabel ?? "")
    }</text>`,
  );
  series.forEach((s, si) => {
    const c = PALETTE[si % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length) {
      parts.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2" points="${
          pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ")
        }"><title>${escapeHtml(s.name)}</title></polyline>`,
      );
    }
  });
  parts.push(...leg.parts(H - B + 26), `</svg>`);
  return parts.join("");
}

// ---------------------------------------------------------------------------------------------------------
// Per-record values

function meanOrUndef(xs: readonly number[] | undefined): number | undefined {
  return xs && xs.length ? mean(xs) : undefined;
}

/** Per-record values of the headline metrics of a phase (fractions), undefined where the record has none. */
function recordValues(p: PhaseMetrics | undefined): Record<string, number | undefined> {
  if (!p) return {};
  const loc = p.locality ? Object.values(p.locality).flat() : undefined;
  const port = p.portability ? Object.values(p.portability).flat() : undefined;
  return {
    rewrite_acc: meanOrUndef(p.rewriteAcc),
    rephrase_acc: meanOrUndef(p.rephraseAcc),
    locality: meanOrUndef(loc),
    portability: meanOrUndef(port),
    ES: p.rewritePromptsProbs?.length
      ? efficacyScore(p.rewritePromptsProbs)
      : meanOrUndef(p.rewritePromptsCorrect),
    PS: p.paraphrasePromptsProbs?.length
      ? paraphraseScore(p.paraphrasePromptsProbs)
      : meanOrUndef(p.paraphrasePromptsCorrect),
    NS: p.neighborhoodPromptsProbs?.length
      ? neighborhoodScore(p.neighborhoodPromptsProbs)
      : meanOrUndef(p.neighborhoodPromptsCorrect),
  };
}

/** Running mean of a series, skipping undefined values (they keep the previous mean). */
function running(values: (number | undefined)[]): [number, number][] {
  let s = 0, n = 0;
  const out: [number, number][] = [];
  values.forEach((v, i) => {
    if (v !== undefined && Number.isFinite(v)) s += v, n++;
    if (n) out.push([i + 1, s / n]);
  });
  return out;
}

const HEADLINE = ["rewrite_acc", "rephrase_acc", "locality", "portability", "ES", "PS", "NS"] as const;

/** Headline summary values (%) of a run's phase, for the bar charts. */
function headline(s: EvalSummary, phase: "pre" | "post" | "final"): Record<string, number | undefined> {
  const ee = phase === "final" ? s.final?.easyedit : s.easyedit[phase];
  const rome = phase === "final" ? s.final?.rome ?? {} : s.rome;
  const avg = (
    r?: Record<string, number>,
  ) => (r && Object.keys(r).length ? mean(Object.values(r)) : undefined);
  const g = (k: string) => rome[`${phase}_${k}_success`]?.[0] ?? rome[`${phase}_${k}_acc`]?.[0];
  const p100 = (x?: number) => (x === undefined ? undefined : 100 * x);
  return {
    rewrite_acc: p100(ee?.rewrite_acc),
    rephrase_acc: p100(ee?.rephrase_acc),
    locality: p100(avg(ee?.locality)),
    portability: p100(avg(ee?.portability)),
    ES: g("rewrite"),
    PS: g("paraphrase"),
    NS: g("neighborhood"),
    S: rome[`${phase}_score`]?.[0],
  };
}

// ---------------------------------------------------------------------------------------------------------
// HTML

function htmlTable(t: Table): string {
  return `<table><thead><tr>${t.head.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr></thead><tbody>${
    t.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`).join("")
  }</tbody></table>`;
}

const CSS =
  `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.meta{color:#555}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #eee}
.chart .title{font-size:13px;font-weight:600}.chart .tick{font-size:11px;fill:#444}
.chart .grid{stroke:#eee}.chart .axis{stroke:#888}.warn{color:#a40}details{margin:12px 0}`;

function runSection(run: RunData, idx: number): string {
  const s = run.summary;
  const info = run.info;
  const out: string[] = [];
  out.push(`<h2 id="run${idx}">${escapeHtml(run.label)}</h2>`);
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
  out.push(`<h3>EasyEdit metrics (%)</h3>`, htmlTable(easyEditTable(s)));
  out.push(`<h3>ROME CounterFact metrics (×100)</h3>`, htmlTable(romeTable(s)));
  out.push(`<h3>Edits</h3>`, htmlTable(diagnosticsTable(s)));

  const phases: ("pre" | "post" | "final")[] = s.final ? ["pre", "post", "final"] : ["pre", "post"];
  const hl = phases.map((p) => headline(s, p));
  const metricNames = [...HEADLINE, "S"].filter((m) => hl.some((h) => h[m] !== undefined));
  out.push(
    `<div class="charts">`,
    svgBarChart(
      "Pre vs post edit (%)",
      phases,
      metricNames.map((m) => ({ label: m, values: hl.map((h) => h[m]) })),
      { yMax: 100 },
    ),
    `</div>`,
  );

  const post = run.results.map((r) => recordValues(r.post));
  const hists: string[] = [];
  HEADLINE.forEach((m, i) => {
    const v = post.map((p) => p[m]).filter((x): x is number => x !== undefined);
    if (v.length) {
      hists.push(
        svgHistogram(`post ${m} per record`, v, { domain: [0, 1], color: PALETTE[i % PALETTE.length] }),
      );
    }
  });
  const edits = run.results.flatMap((r) => r.edits.filter((e) => e.error === undefined));
  if (edits.length) {
    hists.push(
      svgHistogram("division factor k·u", edits.map((e) => e.divisionFactor), { color: PALETTE[3] }),
    );
    hists.push(svgHistogram("‖ΔW‖/‖W‖", edits.map((e) => e.dWRel), { color: PALETTE[4] }));
  }
  hists.push(svgHistogram("edit seconds per record", run.results.map((r) => r.time), { color: PALETTE[5] }));
  out.push(`<h3>Distributions over records</h3>`, `<div class="charts">${hists.join("")}</div>`);

  const curves: LineSeries[] = [];
  for (const m of ["rewrite_acc", "ES", "PS", "NS", "locality"] as const) {
    const v = post.map((p) => p[m]);
    if (v.some((x) => x !== undefined)) curves.push({ name: `post ${m}`, points: running(v) });
  }
  if (s.final) {
    const fin = run.results.map((r) => recordValues(r.final));
    for (const m of ["rewrite_acc", "ES"] as const) {
      const v = fin.map((p) => p[m]);
      if (v.some((x) => x !== undefined)) curves.push({ name: `final ${m}`, points: running(v) });
    }
  }
  if (curves.length) {
    out.push(
      `<h3>${info?.protocol === "sequential" ? "Sequential edits" : "Edits in order"}: running accuracy</h3>`,
      `<div class="charts">${
        svgLineChart("Running mean over the first k edits", curves, { xLabel: "edit k" })
      }</div>`,
    );
  }

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

  const rows = run.results.map((r) => {
    const pre = recordValues(r.pre), po = recordValues(r.post);
    const e = r.edits[0];
    return [
      String(r.index),
      String(r.caseId),
      r.request.subject,
      `${r.request.groundTruth ?? "?"} → ${r.request.targetNew}`,
      pct(pre.rewrite_acc),
      pct(po.rewrite_acc),
      pct(po.rephrase_acc),
      pct(po.locality),
      pct(po.ES),
      pct(po.PS),
      pct(po.NS),
      e ? num(e.divisionFactor, 3) : "–",
      e ? num(e.dWRel, 3) : "–",
      num(r.time, 2),
    ];
  });
  out.push(
    `<details><summary>Per record (${rows.length})</summary>`,
    htmlTable({
      head: [
        "#",
        "case",
        "subject",
        "true → new",
        "pre rewrite",
        "post rewrite",
        "rephrase",
        "locality",
        "ES",
        "PS",
        "NS",
        "k·u",
        "‖ΔW‖/‖W‖",
        "edit s",
      ],
      rows,
    }),
    `</details>`,
  );
  return out.join("\n");
}

function comparisonSection(runs: RunData[]): string {
  const hl = runs.map((r) => headline(r.summary, "post"));
  const metrics = [...HEADLINE, "S"].filter((m) => hl.some((h) => h[m] !== undefined));
  const t: Table = {
    head: ["run", "records", ...metrics.map((m) => `post ${m}`), "edit s", "NaN fallbacks", "failed"],
    rows: runs.map((r, i) => [
      r.label,
      String(r.summary.num_cases),
      ...metrics.map((m) => num(hl[i][m])),
      num(r.summary.diagnostics.timing.editSeconds[0], 2),
      String(r.summary.diagnostics.fallbacks),
      String(r.summary.diagnostics.failed),
    ]),
  };
  return [
    `<h2>Runs side by side</h2>`,
    htmlTable(t),
    `<div class="charts">`,
    svgBarChart(
      "Post-edit metrics by run (%)",
      runs.map((r) => r.label),
      metrics.map((m) => ({ label: m, values: hl.map((h) => h[m]) })),
      { yMax: 100 },
    ),
    svgBarChart(
      "Seconds per edit by run",
      runs.map((r) => r.label),
      [{ label: "edit s", values: runs.map((r) => r.summary.diagnostics.timing.editSeconds[0]) }],
      { width: 420 },
    ),
    `</div>`,
  ].join("\n");
}

/**
 * A self-contained HTML report (inline CSS and SVG, no scripts, no external resources): for each run its
 * tables, pre vs post bars, per-record distributions and the running-accuracy curve; with several runs
 * (e.g. f32 vs f16) first a side-by-side comparison.
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
<p class="meta">Generated by keg eval. EasyEdit numbers are fractions ×100; ROME numbers follow ROME's summarize.py (×100, rounded half to even).</p>
</body></html>
`;
}
