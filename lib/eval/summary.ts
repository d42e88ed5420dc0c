/**
 * The summary of a run: lib/eval/metrics.ts's EasyEdit and ROME summaries, the final-model summary of
 * sequential runs and the edits' diagnostics ({@link buildSummary}), plus the per-record values of the
 * headline metrics the report plots and bootstraps ({@link recordValues}).
 * @module
 */
import {
  efficacyScore,
  harmonicMean,
  neighborhoodScore,
  paraphraseScore,
  type PhaseMetrics,
  type RecordMetrics,
  summarize,
  type Summary,
} from "./metrics.ts";
import type { RecordResult } from "./protocol.ts";
import type { RunInfo } from "./results.ts";
import {
  type BootstrapOptions,
  bootstrapRatio,
  bootstrapStatistic,
  type Interval,
  type Item,
} from "./bootstrap.ts";

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
  /**
   * Mean and 95 % percentile-bootstrap interval (2,000 resamples of the records, seed 0) of every headline
   * metric per phase, in % (×100), with n = the records that have the metric.
   */
  ci95: Partial<Record<Phase, Record<string, Interval>>>;
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
  const out: EvalSummary = { ...summarize(recs), diagnostics: diagnosticsSummary(results), ci95: {} };
  const phases: Phase[] = results.some((r) => r.final) ? ["pre", "post", "final"] : ["pre", "post"];
  for (const ph of phases) {
    const iv = headlineIntervals(results.filter((r) => phaseOf(r, ph)), ph);
    out.ci95[ph] = Object.fromEntries(
      Object.entries(iv).map((
        [k, v],
      ) => [k, { value: 100 * v.value, lo: 100 * v.lo, hi: 100 * v.hi, n: v.n }]),
    );
  }
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

function meanOrUndef(xs: readonly number[] | undefined): number | undefined {
  return xs && xs.length ? mean(xs) : undefined;
}

/** Per-record values of the headline metrics of a phase (fractions), undefined where the record has none. */
export function recordValues(p: PhaseMetrics | undefined): Record<string, number | undefined> {
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
export function running(values: (number | undefined)[]): [number, number][] {
  let s = 0, n = 0;
  const out: [number, number][] = [];
  values.forEach((v, i) => {
    if (v !== undefined && Number.isFinite(v)) s += v, n++;
    if (n) out.push([i + 1, s / n]);
  });
  return out;
}

/** The headline metrics, in the report's order. */
export const HEADLINE = ["rewrite_acc", "rephrase_acc", "locality", "portability", "ES", "PS", "NS"] as const;

/** A headline metric's name. */
export type HeadlineMetric = typeof HEADLINE[number];

/** A phase of a record. */
export type Phase = "pre" | "post" | "final";

/** Headline summary values (%) of a run's phase, as the summary tables give them. */
export function headline(s: EvalSummary, phase: Phase): Record<string, number | undefined> {
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

/**
 * One record's contribution to a headline metric's mean, as the summary aggregates it: EasyEdit's
 * rewrite/rephrase accuracy average every prompt (sum and count of the record's prompts), the others
 * average per-record values (count 1). Undefined where the record has no such prompts.
 */
export function metricItem(p: PhaseMetrics | undefined, m: HeadlineMetric): Item | undefined {
  if (!p) return undefined;
  const list = m === "rewrite_acc" ? p.rewriteAcc : m === "rephrase_acc" ? p.rephraseAcc : undefined;
  if (list) return list.length ? { s: list.reduce((a, b) => a + b, 0), c: list.length } : undefined;
  const v = recordValues(p)[m];
  return v === undefined || !Number.isFinite(v) ? undefined : { s: v, c: 1 };
}

/** The record's phase metrics. */
export function phaseOf(r: RecordResult, phase: Phase): PhaseMetrics | undefined {
  return phase === "pre" ? r.pre : phase === "post" ? r.post : r.final;
}

/** Mean (fraction) and 95 % bootstrap CI of every headline metric of a phase, and of ROME's S. */
export function headlineIntervals(
  results: readonly RecordResult[],
  phase: Phase,
  opts: BootstrapOptions = {},
): Record<string, Interval> {
  const out: Record<string, Interval> = {};
  for (const m of HEADLINE) {
    const items = results.map((r) => metricItem(phaseOf(r, phase), m)).filter((x): x is Item => !!x);
    if (items.length) out[m] = bootstrapRatio(items, opts);
  }
  const vals = results.map((r) => recordValues(phaseOf(r, phase)));
  const withAll = vals.filter((v) => v.ES !== undefined && v.PS !== undefined && v.NS !== undefined);
  if (withAll.length) {
    out.S = bootstrapStatistic(withAll, (sample) => {
      const m = (k: "ES" | "PS" | "NS") => mean(sample.map((v) => v[k]!));
      return harmonicMean([m("ES"), m("PS"), m("NS")]);
    }, opts);
  }
  return out;
}
