/**
 * A run directory on disk: the JSON Lines of per-record results (exact round trip, a torn last line
 * ignored), `run.json` ({@link RunInfo}), and reading a run back ({@link readRunDir}) with the final
 * metrics of sequential runs attached.
 *
 * A run directory holds `run.json`, `results.jsonl` (one {@link RecordResult} per line), for sequential
 * runs `final.jsonl` ({@link FinalResult} lines), and the rendered `summary.json`, `summary.md` and
 * `report.html`.
 * @module
 */
import type { FinalResult, RecordResult } from "./protocol.ts";
import { buildSummary, type EvalSummary } from "./summary.ts";

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
    if (!f) return rest;
    const out: RecordResult = { ...rest, final: f.final };
    if (f.topK && rest.topK) out.topK = { ...rest.topK, final: f.topK };
    return out;
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
