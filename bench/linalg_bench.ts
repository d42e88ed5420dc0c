/**
 * Benchmarks of the edit-math kernels: rank-one update (GB/s), covariance accumulation (GFLOP/s) and
 * Cholesky factor + solve (GFLOP/s), f32 and f16 side by side, each with its max error against an f64
 * reference. Run: `deno bench -A bench/linalg_bench.ts`. Sizes via KEG_BENCH_OUTER (W is N×N),
 * KEG_BENCH_COV ("n,d") and KEG_BENCH_CHOL (comma-separated d values); the defaults finish in about
 * a minute on lavapipe (most of it the f64 references).
 *
 * The table printed first comes from its own timed loop (each iteration waits for the GPU); the
 * `deno bench` rows time the same work.
 * @module
 */
import { Gpu, Tensor } from "../lib/gpu/mod.ts";
import type { DType } from "../lib/gpu/dtype.ts";
import { choleskyFactor } from "../lib/ops/cholesky.ts";
import { covarianceAccumulate } from "../lib/ops/covariance.ts";
import {
  choleskyReference,
  choleskySolveReference,
  covarianceReference,
  outerReference,
} from "../lib/testing/linalg_reference.ts";
import { outerUpdate } from "../lib/ops/outer.ts";

const env = (k: string, dflt: string) => Deno.env.get(k) ?? dflt;
const OUTER_N = Number(env("KEG_BENCH_OUTER", "4096"));
const [COV_N, COV_D] = env("KEG_BENCH_COV", "1024,1024").split(",").map(Number);
const CHOL_D = env("KEG_BENCH_CHOL", "1024,2048").split(",").map(Number);

const gpu = await Gpu.open({ quiet: true });

function rand(n: number, seed: number, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}
const asStored = (x: Float32Array, dt: DType) => (dt === "f16" ? Float32Array.from(Float16Array.from(x)) : x);

/** Median seconds of `reps` runs of `fn` (each followed by a GPU sync), after one warm-up run. */
async function time(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  await gpu.sync();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    await gpu.sync();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

interface Row {
  kernel: string;
  size: string;
  dtype: string;
  ms: number;
  rate: string;
  error: string;
}
const rows: Row[] = [];

// ---- outer update: W [N, N] (in_out), reads and writes W once: 2·N²·bytes per update
const outerCases: { dt: DType; w: Tensor; u: Tensor; v: Tensor }[] = [];
for (const dt of ["f32", "f16"] as const) {
  const n = OUTER_N;
  const w0 = asStored(rand(n * n, 1), dt), u0 = rand(n, 2), v0 = rand(n, 3);
  const w = Tensor.from(gpu, w0, [n, n], dt), u = Tensor.from(gpu, u0, [n], "f32");
  const v = Tensor.from(gpu, v0, [n], "f32");
  // accuracy once: one update with α = 0.5 vs f64 (relative to max |W'|)
  await outerUpdate(w, u, v, 0.5, { layout: "in_out" });
  const got = await w.read();
  const want = outerReference(w0, u0, v0, 0.5, "in_out");
  let err = 0, mx = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mx = Math.max(mx, Math.abs(want[i]));
  }
  const s = await time(() => outerUpdate(w, u, v, 1e-3, { layout: "in_out" }), 10);
  const bytes = 2 * n * n * (dt === "f32" ? 4 : 2);
  rows.push({
    kernel: "outerUpdate",
    size: `W ${n}×${n}`,
    dtype: `W ${dt}`,
    ms: s * 1e3,
    rate: `${(bytes / s / 1e9).toFixed(2)} GB/s`,
    error: `max |ΔW| ${(err / mx).toExponential(1)} rel`,
  });
  outerCases.push({ dt, w, u, v });
}

// ---- covariance: C [d, d] += XᵀX with X [n, d]; nominal 2·n·d² flops (the symmetric mode does ~half)
const covCases: { dt: DType; sym: boolean; c: Tensor; x: Tensor }[] = [];
const covX = rand(COV_N * COV_D, 4);
for (const [dt, sym] of [["f32", true], ["f16", true], ["f32", false]] as const) {
  const x0 = asStored(covX, dt);
  const x = Tensor.from(gpu, x0, [COV_N, COV_D], dt);
  const c = Tensor.zeros(gpu, [COV_D, COV_D], "f32");
  await covarianceAccumulate(c, x, { symmetric: sym });
  const got = await c.read();
  const { c: want } = covarianceReference(null, x0, COV_N, COV_D);
  let err = 0, mx = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mx = Math.max(mx, Math.abs(want[i]));
  }
  const s = await time(() => covarianceAccumulate(c, x, { symmetric: sym }), 5);
  rows.push({
    kernel: `covarianceAccumulate${sym ? "" : " (full)"}`,
    size: `n=${COV_N} d=${COV_D}`,
    dtype: `X ${dt}`,
    ms: s * 1e3,
    rate: `${((2 * COV_N * COV_D * COV_D) / s / 1e9).toFixed(2)} GFLOP/s`,
    error: `max |ΔC| ${(err / mx).toExponential(1)} rel`,
  });
  covCases.push({ dt, sym, c, x });
}

// ---- Cholesky: C = XᵀX/n + λI with X [2d, d] (built on the GPU; cond ~1e2–1e3), factor d³/3 flops,
// solve 2·d² per right-hand side. The error is the solve's against an f64 factor + solve of the same C.
const cholCases: { d: number; c: Tensor; b: Tensor }[] = [];
for (const d of CHOL_D) {
  const n = 2 * d, lambda = 1e-3;
  const x = Tensor.from(gpu, rand(n * d, 5 + d, 1 / Math.sqrt(n)), [n, d], "f32");
  const cT = Tensor.zeros(gpu, [d, d], "f32");
  await covarianceAccumulate(cT, x);
  x.dispose();
  const cF = await cT.read();
  const b0 = rand(d, 6);
  const bT = Tensor.from(gpu, b0, [d], "f32");
  const f = await choleskyFactor(cT, { damping: lambda });
  const xs = await (await f.solve(bT)).read();
  f.dispose();
  const want = choleskySolveReference(choleskyReference(cF, d, lambda), b0, d);
  let err = 0, mx = 0;
  for (let i = 0; i < d; i++) {
    err = Math.max(err, Math.abs(xs[i] - want[i]));
    mx = Math.max(mx, Math.abs(want[i]));
  }
  const sf = await time(async () => (await choleskyFactor(cT, { damping: lambda })).dispose(), 3);
  const f2 = await choleskyFactor(cT, { damping: lambda });
  const ss = await time(async () => (await f2.solve(bT)).dispose(), 5);
  f2.dispose();
  rows.push({
    kernel: "choleskyFactor",
    size: `d=${d}`,
    dtype: "f32",
    ms: sf * 1e3,
    rate: `${(d ** 3 / 3 / sf / 1e9).toFixed(2)} GFLOP/s`,
    error: `max |Δx| ${(err / mx).toExponential(1)} rel (solve vs f64)`,
  });
  rows.push({
    kernel: "CholeskyFactor.solve",
    size: `d=${d}, 1 rhs`,
    dtype: "f32",
    ms: ss * 1e3,
    rate: `${((2 * d * d) / ss / 1e9).toFixed(2)} GFLOP/s`,
    error: "(same solve)",
  });
  cholCases.push({ d, c: cT, b: bT });
}

console.log(`\nkeg linalg kernels on ${gpu.report.description}`);
console.table(rows.map((r) => ({ ...r, ms: Number(r.ms.toFixed(2)) })));

for (const { dt, w, u, v } of outerCases) {
  Deno.bench({
    name: `outerUpdate W ${OUTER_N}×${OUTER_N} ${dt}`,
    group: "outer",
    n: 10,
    warmup: 1,
    async fn() {
      await outerUpdate(w, u, v, 1e-3, { layout: "in_out" });
      await gpu.sync();
    },
  });
}
for (const { dt, sym, c, x } of covCases) {
  Deno.bench({
    name: `covarianceAccumulate n=${COV_N} d=${COV_D} X ${dt}${sym ? "" : " full"}`,
    group: "covariance",
    n: 3,
    warmup: 1,
    async fn() {
      await covarianceAccumulate(c, x, { symmetric: sym });
      await gpu.sync();
    },
  });
}
for (const { d, c, b } of cholCases) {
  Deno.bench({
    name: `choleskyFactor d=${d}`,
    group: "cholesky",
    n: 3,
    warmup: 1,
    async fn() {
      (await choleskyFactor(c, { damping: 1e-3 })).dispose();
    },
  });
  const factor = await choleskyFactor(c, { damping: 1e-3 });
  Deno.bench({
    name: `CholeskyFactor.solve d=${d}`,
    group: "cholesky",
    n: 10,
    warmup: 1,
    async fn() {
      (await factor.solve(b)).dispose();
      await gpu.sync();
    },
  });
}
