import assert from "node:assert/strict";
import { GpuError, Tensor } from "../../lib/gpu/mod.ts";
import type { DType } from "../../lib/gpu/dtype.ts";
import { lowRankReference } from "../../lib/testing/linalg_reference.ts";
import { lowRankUpdate } from "../../lib/ops/outer.ts";
import { randArray, roundF16, testGpu } from "../_util.ts";

/**
 * The kernel accumulates Σ_k u_k[r]·v_k[c] with `rank` fmas (each ≤ 2⁻²⁴ relative to the running sum of
 * magnitudes) and adds α·acc to W with one more rounding: |W' − e| ≤ (rank + 2)·2⁻²⁴·(|α|·Σ|u v| + |e|).
 * An f16 W adds one rounding of the result (2⁻¹¹·|e| + half the subnormal spacing).
 */
async function runCase(
  gpuOpts: { maxBindingBytes?: number },
  din: number,
  dout: number,
  rank: number,
  layout: "in_out" | "out_in",
  dtype: DType,
  seed: number,
): Promise<number> {
  const gpu = await testGpu(gpuOpts);
  const shape = layout === "in_out" ? [din, dout] : [dout, din];
  const w0 = randArray(din * dout, seed);
  const w = dtype === "f16" ? roundF16(w0) : w0;
  const u = randArray(rank * din, seed + 1, 2), v = randArray(rank * dout, seed + 2, 3);
  const alpha = -0.61;
  const tw = Tensor.from(gpu, w, shape, dtype);
  const tu = Tensor.from(gpu, u, [rank, din], "f32"), tv = Tensor.from(gpu, v, [rank, dout], "f32");
  await lowRankUpdate(tw, tu, tv, alpha, { layout });
  const got = await tw.read();
  const chunks = tw.chunks.length;
  tw.dispose(), tu.dispose(), tv.dispose();
  const want = lowRankReference(w, u, v, rank, alpha, layout);
  const mag = lowRankReference(new Float64Array(w.length), u.map(Math.abs), v.map(Math.abs), rank, 1, layout);
  for (let i = 0; i < want.length; i++) {
    const e = want[i];
    let tol = (rank + 2) * 2 ** -24 * (Math.abs(alpha) * mag[i] + Math.abs(e) + Math.abs(w[i]));
    if (dtype === "f16") tol = tol * (1 + 2 ** -11) + 2 ** -11 * Math.abs(e) + 2 ** -25;
    if (!(Math.abs(got[i] - e) <= tol)) {
      throw new Error(`${layout} ${dtype} rank ${rank}: W'[${i}] = ${got[i]}, expected ${e} (tol ${tol})`);
    }
  }
  return chunks;
}

Deno.test("lowRankUpdate matches the f64 reference (both layouts, f32 and f16, odd sizes, rank 1–13)", async () => {
  let seed = 1;
  for (const layout of ["in_out", "out_in"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      for (const [din, dout, rank] of [[1, 1, 1], [37, 300, 5], [129, 17, 13]]) {
        await runCase({}, din, dout, rank, layout, dtype, seed++);
      }
    }
  }
});

Deno.test("lowRankUpdate walks row chunks of W", async () => {
  const chunks = await runCase({ maxBindingBytes: 4096 }, 70, 33, 3, "in_out", "f32", 99);
  assert.ok(chunks > 1, `expected a chunked W, got ${chunks}`);
  await runCase({ maxBindingBytes: 4096 }, 33, 70, 4, "out_in", "f16", 98);
});

Deno.test("lowRankUpdate rejects mismatched shapes with a clear error", async () => {
  const gpu = await testGpu();
  const w = Tensor.zeros(gpu, [4, 3], "f32");
  const u = Tensor.zeros(gpu, [2, 4], "f32"), v = Tensor.zeros(gpu, [3, 3], "f32");
  await assert.rejects(() => lowRankUpdate(w, u, v, 1, { layout: "in_out" }), GpuError);
  w.dispose(), u.dispose(), v.dispose();
});
