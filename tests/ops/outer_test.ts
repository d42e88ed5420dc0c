import assert from "node:assert/strict";
import { GpuError, Tensor } from "../../lib/gpu/mod.ts";
import type { DType } from "../../lib/gpu/dtype.ts";
import { outerReference } from "../../lib/testing/linalg_reference.ts";
import { outerUpdate } from "../../lib/ops/outer.ts";
import { randArray, roundF16, testGpu } from "../_util.ts";

type Layout = "in_out" | "out_in";

/**
 * Checks W' against the f64 reference elementwise with a bound derived from the rounding steps:
 * the GPU computes s = fl32(α·a[r]) (relative error ≤ 2⁻²⁴) and fl32(fma(s, b[c], w)) (one rounding,
 * ≤ 2⁻²⁴·|result|), so |W'₃₂ − e| ≤ 2⁻²⁴·(|α a b| + |e|) up to second-order terms (we allow twice that).
 * An f16 W adds one rounding of that f32 value to f16: ≤ 2⁻¹¹·|e| for normal values and half the
 * subnormal spacing (2⁻²⁵) near zero.
 */
function checkUpdate(
  got: Float32Array,
  w: Float32Array,
  u: Float32Array,
  v: Float32Array,
  alpha: number,
  layout: Layout,
  dtype: DType,
  label: string,
): void {
  const want = outerReference(w, u, v, alpha, layout);
  const [rowVec, colVec] = layout === "in_out" ? [u, v] : [v, u];
  const cols = colVec.length;
  for (let i = 0; i < want.length; i++) {
    const e = want[i];
    const prod = Math.abs(alpha * rowVec[Math.floor(i / cols)] * colVec[i % cols]);
    let tol = 2 * 2 ** -24 * (prod + Math.abs(e));
    if (dtype === "f16") tol = tol * (1 + 2 ** -11) + 2 ** -11 * Math.abs(e) + 2 ** -25;
    if (!(Math.abs(got[i] - e) <= tol)) {
      throw new Error(
        `${label}: W'[${Math.floor(i / cols)}, ${i % cols}] = ${got[i]}, expected ${e} (tol ${tol})`,
      );
    }
  }
}

async function runCase(
  gpuOpts: { maxBindingBytes?: number },
  din: number,
  dout: number,
  layout: Layout,
  dtype: DType,
  seed: number,
  expectChunks = false,
): Promise<void> {
  const gpu = await testGpu(gpuOpts);
  const shape = layout === "in_out" ? [din, dout] : [dout, din];
  const w0 = randArray(din * dout, seed);
  const w = dtype === "f16" ? roundF16(w0) : w0;
  const u = randArray(din, seed + 1, 2), v = randArray(dout, seed + 2, 3);
  const alpha = -0.37;
  const tw = Tensor.from(gpu, w, shape, dtype);
  const tu = Tensor.from(gpu, u, [din], "f32"), tv = Tensor.from(gpu, v, [dout], "f32");
  if (expectChunks) assert.ok(tw.chunks.length > 1, `expected a chunked W, got ${tw.chunks.length} chunk`);
  await outerUpdate(tw, tu, tv, alpha, { layout });
  const got = await tw.read();
  checkUpdate(got, w, u, v, alpha, layout, dtype, `outer ${layout} ${dtype} d_in=${din} d_out=${dout}`);
  tw.dispose();
  tu.dispose();
  tv.dispose();
  if (Object.keys(gpuOpts).length) await gpu.destroy();
}

Deno.test("outerUpdate matches the f64 reference: odd sizes, both layouts, f32 and f16 W", async () => {
  let seed = 10;
  for (const dtype of ["f32", "f16"] as const) {
    for (const layout of ["in_out", "out_in"] as const) {
      for (const [din, dout] of [[1, 1], [3, 17], [17, 3], [65, 130], [257, 33]]) {
        await runCase({}, din, dout, layout, dtype, seed += 3);
      }
    }
  }
});

Deno.test("outerUpdate walks row chunks (tiny binding caps), both layouts, f32 and f16", async () => {
  let seed = 100;
  for (const dtype of ["f32", "f16"] as const) {
    for (const layout of ["in_out", "out_in"] as const) {
      // rows of 37 values; a cap of 5 rows (4 for f16 after keeping chunk starts 4-byte aligned)
      const [din, dout] = layout === "in_out" ? [23, 37] : [37, 23];
      await runCase({ maxBindingBytes: 37 * 4 * 5 }, din, dout, layout, dtype, seed += 3, true);
    }
  }
});

Deno.test("outerUpdate on a real >128 MiB f32 W [8400, 4096] (two chunks at the 128 MiB binding limit)", async () => {
  const gpu = await testGpu();
  const din = 8400, dout = 4096; // in_out: W [8400, 4096] f32 = 137.6 MB
  const bytes = din * dout * 4;
  assert.ok(bytes > 128 * 2 ** 20);
  const w = new Float32Array(din * dout);
  // cheap deterministic fill (randArray over 34M values is slow): values in [-1, 1)
  for (let i = 0; i < w.length; i++) w[i] = ((i * 2654435761) % 4093) / 2046.5 - 1;
  const u = randArray(din, 7, 2), v = randArray(dout, 8, 3);
  const tw = Tensor.from(gpu, w, [din, dout], "f32");
  const needed = Math.ceil(bytes / gpu.maxBindingBytes);
  assert.equal(tw.chunks.length, needed);
  if (gpu.maxBindingBytes <= 128 * 2 ** 20) assert.ok(tw.chunks.length >= 2);
  const tu = Tensor.from(gpu, u, [din], "f32"), tv = Tensor.from(gpu, v, [dout], "f32");
  await outerUpdate(tw, tu, tv, 0.25, { layout: "in_out" });
  const got = await tw.read();
  tw.dispose();
  checkUpdate(got, w, u, v, 0.25, "in_out", "f32", "outer 8400×4096");
});

Deno.test("outerUpdate rejects mismatched vectors and bad layouts with clear errors", async () => {
  const gpu = await testGpu();
  const w = Tensor.zeros(gpu, [4, 6], "f32");
  const u4 = Tensor.zeros(gpu, [4], "f32"), u6 = Tensor.zeros(gpu, [6], "f32");
  // out_in W [d_out=4, d_in=6] wants u of length 6 and v of length 4
  await outerUpdate(w, u6, u4, 1, { layout: "out_in" });
  await assert.rejects(() => outerUpdate(w, u4, u6, 1, { layout: "out_in" }), (e: Error) => {
    assert.ok(e instanceof GpuError);
    assert.match(e.message, /outerUpdate: .*d_in = 6 .*d_out = 4/);
    return true;
  });
  await assert.rejects(
    () => outerUpdate(w, u4, u6, 1, { layout: "rows" as Layout }),
    /outerUpdate: layout must be/,
  );
  const h = Tensor.zeros(gpu, [4], "f16");
  if (h.dtype === "f16") {
    await assert.rejects(() => outerUpdate(w, u4, h, 1, { layout: "in_out" }), /must be f32/);
  }
  await gpu.sync();
});
