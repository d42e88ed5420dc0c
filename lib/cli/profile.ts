/**
 * `--profile` for edit, eval and stats: GPU time per op and per stage (from timestamp queries on a GPU;
 * timed serially on a CPU adapter, whose timestamps do not bracket its kernels), wall time per stage,
 * GPU-busy fraction, dispatch and readback counts, printed to stderr at the end.
 * @module
 */
import type { Gpu, GpuCounters, ProfileReport, StageProfile } from "../gpu/mod.ts";

/** What one profiled run measured. */
export interface ProfileSummary {
  stages: StageProfile[];
  ops: ProfileReport["ops"];
  counters: GpuCounters;
  gpuSeconds: number;
  /** Timed serially (CPU adapter) rather than by timestamp queries. */
  serial: boolean;
}

/** Sums the per-device reports and counters (devices run one after another, so wall time is shared). */
export function mergeProfiles(reports: ProfileReport[], counters: GpuCounters[]): ProfileSummary {
  const stages = new Map<string, StageProfile>();
  const ops = new Map<string, ProfileReport["ops"][number]>();
  for (const r of reports) {
    for (const s of r.stages) {
      const e = stages.get(s.stage);
      if (!e) stages.set(s.stage, { ...s });
      else {
        e.gpuSeconds += s.gpuSeconds, e.dispatches += s.dispatches, e.readbacks += s.readbacks;
        if (s.waitSeconds !== undefined) e.waitSeconds = (e.waitSeconds ?? 0) + s.waitSeconds;
      }
    }
    for (const o of r.ops) {
      const k = `${o.stage}\u0000${o.op}`;
      const e = ops.get(k);
      if (!e) ops.set(k, { ...o });
      else e.count += o.count, e.seconds += o.seconds;
    }
  }
  const total = { ...counters[0] };
  for (const c of counters.slice(1)) {
    for (const k of Object.keys(total) as (keyof GpuCounters)[]) total[k] += c[k];
  }
  const opList = [...ops.values()].sort((a, b) => b.seconds - a.seconds);
  return {
    stages: [...stages.values()],
    ops: opList,
    counters: total,
    gpuSeconds: opList.reduce((s, o) => s + o.seconds, 0),
    serial: reports.some((r) => r.serial),
  };
}

/** The profile as a text table. */
export function formatProfile(p: ProfileSummary, topOps = 12): string {
  const lines = [
    p.serial
      ? "profile (CPU adapter, whose timestamps do not bracket its kernels: each op is submitted alone and " +
        "waited for, the wait less its fixed ~10 ms is the op's GPU time; no capture replay; host s = wall − " +
        "waits; GPU busy = GPU / (GPU + host), the share of an unprofiled run's wall spent in kernels):"
      : "profile (GPU time from timestamp queries; one compute pass per dispatch while profiling):",
  ];
  lines.push(
    `  stage        wall s ${p.serial ? "  host s " : ""}   GPU s   GPU busy  dispatches  readbacks`,
  );
  for (const s of p.stages) {
    const host = p.serial ? Math.max(0, s.wallSeconds - (s.waitSeconds ?? 0)) : 0;
    const denom = p.serial ? host + s.gpuSeconds : s.wallSeconds;
    const busy = denom > 0 ? `${(100 * s.gpuSeconds / denom).toFixed(1)}%` : "-";
    lines.push(
      `  ${s.stage.padEnd(10)} ${s.wallSeconds.toFixed(3).padStart(8)} ${
        p.serial ? host.toFixed(3).padStart(8) + " " : ""
      }${s.gpuSeconds.toFixed(3).padStart(8)} ${busy.padStart(9)} ${String(s.dispatches).padStart(11)} ${
        String(s.readbacks).padStart(10)
      }`,
    );
  }
  const c = p.counters;
  lines.push(
    `  dispatches recorded ${c.dispatches}, replayed ${c.replayed}, submits ${c.submits}, readbacks ${c.readbacks}, ` +
      `writes ${c.writes}, bind groups cached ${c.groupHits} / created ${c.groupMisses}`,
  );
  lines.push("  top ops by GPU time:");
  for (const o of p.ops.slice(0, topOps)) {
    lines.push(
      `    ${(o.stage + " " + o.op).padEnd(40)} ${o.seconds.toFixed(3).padStart(8)} s  ${
        String(o.count).padStart(6)
      }×  ${(1e6 * o.seconds / o.count).toFixed(0).padStart(7)} µs each`,
    );
  }
  return lines.join("\n");
}

/**
 * Runs `fn` with profiling on every device when `on` (else just runs it) and prints the profile to
 * stderr afterwards; returns what `fn` returns and the summary (null when off).
 */
export async function profiled<T>(
  on: boolean,
  gpus: Gpu[],
  fn: () => Promise<T>,
): Promise<{ value: T; profile: ProfileSummary | null }> {
  if (!on) return { value: await fn(), profile: null };
  const timed = gpus.map((g) => g.startProfile());
  if (!timed.every(Boolean)) {
    console.error("keg --profile: the adapter lacks timestamp-query; GPU times are missing");
  }
  for (const g of gpus) g.resetCounters();
  const value = await fn();
  const reports = await Promise.all(gpus.map((g) => g.stopProfile()));
  const profile = mergeProfiles(reports, gpus.map((g) => g.counters()));
  console.error(formatProfile(profile));
  return { value, profile };
}
