/**
 * Cholesky factor + one solve (ROME's u = C⁻¹k*) at d = 1024 and 4096: the packed-texture trailing update
 * that `auto` picks on CPU adapters against the storage-read Gram kernel it replaces (`kernel: "direct"`,
 * the baseline), in the same run, with each one's solve error against an f64 reference (d = 1024).
 * Run: `deno bench -A bench/cholesky_bench.ts`; sizes via KEG_BENCH_CHOL_D (comma-separated d values).
 * @module
 */
import { Gpu, Tensor } from "../lib/gpu/mod.ts";
import { choleskyFactor } from "../lib/ops/cholesky.ts";
import type { GramKernel } from "../lib/ops/covariance.ts";
import { choleskyReference, choleskySolveReference } from "../lib/testing/linalg_reference.ts";

const SIZES = (Deno.env.get("KEG_BENCH_CHOL_D") ?? "1024,4096").split(",").map(Number);
const gpu = await Gpu.open({ quiet: true });

/** A symmetric positive-definite matrix: R + Rᵀ + d·I with R uniform in [-0.5, 0.5) (diagonally dominant). */
function spd(d: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const r = () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return a / 4294967296 - 0.5;
  };
  const c = new Float32Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      const v = r() + (i === j ? d : 0);
      c[i * d + j] = v;
      c[j * d + i] = v;
    }
  }
  return c;
}

const cases = SIZES.map((d) => {
  const c = spd(d, d);
  const b = new Float32Array(d).map((_, i) => Math.sin(i + 1));
  return { d, c, b, C: Tensor.from(gpu, c, [d, d], "f32"), B: Tensor.from(gpu, b, [d], "f32") };
});

async function factorSolve(C: Tensor, B: Tensor, kernel: GramKernel): Promise<Float32Array> {
  const f = await choleskyFactor(C, { damping: 1e-3, kernel });
  const x = await f.solve(B);
  const out = await x.read();
  x.dispose();
  f.dispose();
  return out;
}

const rows: string[] = [];
for (const { d, c, b, C, B } of cases) {
  if (d > 1024) continue; // the f64 reference of a 4096² factor takes minutes in TS
  const want = choleskySolveReference(choleskyReference(c, d, 1e-3), b, d);
  for (const kernel of ["direct", "auto"] as const) {
    const got = await factorSolve(C, B, kernel);
    let err = 0, mx = 0;
    for (let i = 0; i < d; i++) {
      err = Math.max(err, Math.abs(got[i] - want[i])), mx = Math.max(mx, Math.abs(want[i]));
    }
    rows.push(`| d=${d} | ${kernel} | max |Δx| / max |x| = ${(err / mx).toExponential(1)} |`);
  }
}
if (rows.length) {
  console.error(["", "| size | kernel | solve error vs f64 |", "|---|---|---|", ...rows].join("\n"));
}

for (const { d, C, B } of cases) {
  for (const kernel of ["direct", "auto"] as const) {
    Deno.bench({
      name: `cholesky factor + solve d=${d} ${
        kernel === "direct" ? "storage-read update (before)" : "auto (texel)"
      }`,
      group: `cholesky d=${d}`,
      baseline: kernel === "direct",
      n: d > 2048 ? 2 : 5,
      warmup: 1,
      async fn() {
        await factorSolve(C, B, kernel);
      },
    });
  }
}
