/**
 * Percentile bootstrap confidence intervals over records, seeded so a report renders the same twice.
 *
 * Each record contributes a pair (s, c) and the statistic is Σs / Σc over the (re)sampled records: c = 1
 * gives the mean of per-record values (ROME's ES/PS/NS, EasyEdit's locality); c = the number of prompts
 * and s their sum gives EasyEdit's mean over every prompt (rewrite_acc, rephrase_acc). The paired
 * version resamples records common to two runs and takes the difference of the two statistics on the
 * same resample, so record-to-record variation that both runs share cancels.
 * @module
 */
import { rng } from "../util/random.ts";

/** One record's contribution: sum and count (a plain value v is {s: v, c: 1}). */
export interface Item {
  /** Sum of the record's values. */
  s: number;
  /** How many values (weight). */
  c: number;
}

/** A point estimate with its 95 % interval. */
export interface Interval {
  /** The statistic on all records. */
  value: number;
  /** 2.5th percentile of the bootstrap distribution. */
  lo: number;
  /** 97.5th percentile. */
  hi: number;
  /** Number of records. */
  n: number;
}

/** Options of the bootstrap. */
export interface BootstrapOptions {
  /** Resamples (default 2000). */
  resamples?: number;
  /** Seed (default 0). */
  seed?: number;
  /** Central coverage (default 0.95). */
  level?: number;
}

function ratio(items: readonly Item[]): number {
  let s = 0, c = 0;
  for (const it of items) s += it.s, c += it.c;
  return c > 0 ? s / c : NaN;
}

/** The q-quantile of sorted values, linearly interpolated (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN;
  const h = (sorted.length - 1) * q, i = Math.floor(h);
  return i + 1 < sorted.length ? sorted[i] + (h - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

function interval(value: number, stats: number[], n: number, level: number): Interval {
  const ok = stats.filter(Number.isFinite).sort((a, b) => a - b);
  const a = (1 - level) / 2;
  return { value, lo: quantile(ok, a), hi: quantile(ok, 1 - a), n };
}

/** Percentile bootstrap interval of Σs/Σc over records. Empty input: NaN with n = 0. */
export function bootstrapRatio(items: readonly Item[], opts: BootstrapOptions = {}): Interval {
  const n = items.length;
  const value = ratio(items);
  if (n === 0) return { value: NaN, lo: NaN, hi: NaN, n: 0 };
  const r = rng(opts.seed ?? 0), B = opts.resamples ?? 2000;
  const stats: number[] = new Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0, c = 0;
    for (let k = 0; k < n; k++) {
      const it = items[Math.floor(r() * n)];
      s += it.s, c += it.c;
    }
    stats[b] = c > 0 ? s / c : NaN;
  }
  return interval(value, stats, n, opts.level ?? 0.95);
}

/** Percentile bootstrap interval of the mean of plain values. */
export function bootstrapMean(values: readonly number[], opts: BootstrapOptions = {}): Interval {
  return bootstrapRatio(values.map((v) => ({ s: v, c: 1 })), opts);
}

/**
 * Paired bootstrap interval of statistic(b) − statistic(a) over records present in both runs (`a[i]` and
 * `b[i]` are the same record): every resample draws the same records for both runs.
 */
export function pairedBootstrap(
  a: readonly Item[],
  b: readonly Item[],
  opts: BootstrapOptions = {},
): Interval {
  if (a.length !== b.length) throw new RangeError(`pairedBootstrap: ${a.length} vs ${b.length} records`);
  const n = a.length;
  const value = ratio(b) - ratio(a);
  if (n === 0) return { value: NaN, lo: NaN, hi: NaN, n: 0 };
  const r = rng(opts.seed ?? 0), B = opts.resamples ?? 2000;
  const stats: number[] = new Array(B);
  for (let k = 0; k < B; k++) {
    let sa = 0, ca = 0, sb = 0, cb = 0;
    for (let j = 0; j < n; j++) {
      const i = Math.floor(r() * n);
      sa += a[i].s, ca += a[i].c, sb += b[i].s, cb += b[i].c;
    }
    stats[k] = (cb > 0 ? sb / cb : NaN) - (ca > 0 ? sa / ca : NaN);
  }
  return interval(value, stats, n, opts.level ?? 0.95);
}

/** Percentile bootstrap interval of any statistic of resampled records (e.g. ROME's S, a harmonic mean). */
export function bootstrapStatistic<T>(
  records: readonly T[],
  statistic: (sample: readonly T[]) => number,
  opts: BootstrapOptions = {},
): Interval {
  const n = records.length;
  const value = statistic(records);
  if (n === 0) return { value: NaN, lo: NaN, hi: NaN, n: 0 };
  const r = rng(opts.seed ?? 0), B = opts.resamples ?? 2000;
  const stats: number[] = new Array(B);
  const sample: T[] = new Array(n);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < n; k++) sample[k] = records[Math.floor(r() * n)];
    stats[b] = statistic(sample);
  }
  return interval(value, stats, n, opts.level ?? 0.95);
}
