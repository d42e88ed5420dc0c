/**
 * ROME's Figure-2 roll-up of causal traces (kmeng01/rome `notebooks/average_causal_effects.ipynb`,
 * `read_knowlege`): the average indirect effect per layer for six token buckets — first / middle / last
 * subject token, first token after the subject, further tokens, last token.
 * @module
 */
import type { TraceKind } from "../edit/trace.ts";

/** The token buckets of Figure 2, in its order. */
export const ROLLUP_BUCKETS = [
  "first_subject",
  "middle_subject",
  "last_subject",
  "first_subsequent",
  "further",
  "last",
] as const;

/** One bucket name. */
export type RollupBucket = (typeof ROLLUP_BUCKETS)[number];

/** Human labels of the buckets (the rows of ROME's table). */
export const BUCKET_LABELS: Readonly<Record<RollupBucket, string>> = {
  first_subject: "first subject token",
  middle_subject: "middle subject tokens",
  last_subject: "LAST subject token",
  first_subsequent: "first subsequent token",
  further: "further tokens",
  last: "last token",
};

/** What the roll-up needs of one traced fact. */
export interface RollupFact {
  /** `[b, e)` of the subject. */
  subjectRange: readonly [number, number];
  highScore: number;
  lowScore: number;
  /** `[token][layer]` grid of one kind. */
  scores: readonly (readonly number[])[];
}

/** The roll-up of one kind over facts (the layout of `summary.<kind>` in the oracle's trace.json). */
export interface KindRollup {
  n_facts: number;
  /** Mean clean probability. */
  high_score: number;
  /** Mean corrupted probability. */
  low_score: number;
  /** high − low. */
  total_effect: number;
  /** Per bucket and layer: mean bucket score − mean low score over the facts (not clipped). */
  aie: Record<RollupBucket, number[]>;
  /** Per bucket and layer: mean over rows of (score − that fact's own low score). */
  aie_own_low: Record<RollupBucket, number[]>;
  /** Token rows pooled into each bucket. */
  n_rows: Record<RollupBucket, number>;
  /** Per bucket and layer: the standard error of `aie_own_low` (sample std of the rows / √rows). */
  stderr: Record<RollupBucket, number[]>;
}

/** The rows of each bucket for one fact (`read_knowlege`'s slices; a one-token subject is first and last). */
export function bucketRows(
  subjectRange: readonly [number, number],
  tokens: number,
): Record<RollupBucket, number[]> {
  const [b, e] = subjectRange;
  const lastE = e - 1, lastA = tokens - 1;
  const range = (lo: number, hi: number) => Array.from({ length: Math.max(0, hi - lo) }, (_, i) => lo + i);
  return {
    first_subject: [b],
    middle_subject: range(b + 1, lastE),
    last_subject: [lastE],
    first_subsequent: e < tokens ? [e] : [],
    further: range(e + 1, lastA),
    last: [lastA],
  };
}

function perBucket<T>(f: (b: RollupBucket) => T): Record<RollupBucket, T> {
  return Object.fromEntries(ROLLUP_BUCKETS.map((b) => [b, f(b)])) as Record<RollupBucket, T>;
}

/** Rolls up one kind's grids over facts. Throws on no facts or grids of different depths. */
export function rollup(facts: readonly RollupFact[]): KindRollup {
  if (facts.length === 0) throw new Error("rollup: no facts");
  const L = facts[0].scores[0]?.length ?? 0;
  const sums = perBucket(() => new Float64Array(L)), own = perBucket(() => new Float64Array(L));
  const sq = perBucket(() => new Float64Array(L)), counts = perBucket(() => 0);
  let high = 0, low = 0;
  for (const f of facts) {
    high += f.highScore, low += f.lowScore;
    const rows = bucketRows(f.subjectRange, f.scores.length);
    for (const bk of ROLLUP_BUCKETS) {
      for (const t of rows[bk]) {
        const row = f.scores[t];
        if (row.length !== L) throw new Error(`rollup: grids with ${row.length} and ${L} layers`);
        counts[bk]++;
        for (let l = 0; l < L; l++) {
          sums[bk][l] += row[l];
          own[bk][l] += row[l] - f.lowScore;
          sq[bk][l] += (row[l] - f.lowScore) ** 2;
        }
      }
    }
  }
  const n = facts.length, meanLow = low / n;
  const mean = (bk: RollupBucket, a: Float64Array, shift: number) =>
    Array.from(a, (v) => counts[bk] ? v / counts[bk] - shift : NaN);
  return {
    n_facts: n,
    high_score: high / n,
    low_score: meanLow,
    total_effect: high / n - meanLow,
    aie: perBucket((bk) => mean(bk, sums[bk], meanLow)),
    aie_own_low: perBucket((bk) => mean(bk, own[bk], 0)),
    n_rows: counts,
    stderr: perBucket((bk) =>
      Array.from(sq[bk], (s, l) => {
        const k = counts[bk];
        if (k < 2) return NaN;
        const m = own[bk][l] / k;
        return Math.sqrt(Math.max(0, (s - k * m * m) / (k - 1)) / k);
      })
    ),
  };
}

/** Roll-ups of every kind present in all facts. */
export function rollupKinds(
  facts: readonly {
    subjectRange: readonly [number, number];
    highScore: number;
    lowScore: number;
    scores: Partial<Record<TraceKind, number[][]>>;
  }[],
): Partial<Record<TraceKind, KindRollup>> {
  const out: Partial<Record<TraceKind, KindRollup>> = {};
  if (!facts.length) return out;
  for (const kind of ["hidden", "mlp", "attn"] as const) {
    if (!facts.every((f) => f.scores[kind])) continue;
    out[kind] = rollup(facts.map((f) => ({ ...f, scores: f.scores[kind]! })));
  }
  return out;
}
