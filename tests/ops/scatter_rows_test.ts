import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { GpuError } from "../../lib/gpu/errors.ts";
import { gatherRows, scatterRows } from "../../lib/ops/embedding.ts";
import { assertClose, randArray, roundF16, testGpu } from "../_util.ts";

/** Plain-TS reference: dst[rows[i]] = src[i]. */
function scatterRef(dst: Float32Array, src: Float32Array, rows: Uint32Array, d: number): Float32Array {
  const out = dst.slice();
  rows.forEach((r, i) => out.set(src.subarray(i * d, (i + 1) * d), r * d));
  return out;
}

Deno.test("scatterRows overwrites rows exactly (f32, f16, row-chunked) and checks its input", async () => {
  const N = 37, d = 24, rows = Uint32Array.of(3, 0, 36, 17, 18);
  // a binding cap of 5 f32 rows: dst spans 8 chunks in f32 and 4 in f16
  const gpu = await testGpu({ maxBindingBytes: 5 * d * 4 });
  for (const dtype of ["f32", "f16"] as const) {
    const round = (x: Float32Array) => dtype === "f16" ? roundF16(x) : x;
    const dstData = round(randArray(N * d, 1)), srcData = round(randArray(rows.length * d, 2));
    const dst = Tensor.from(gpu, dstData, [N, d], dtype);
    assert.ok(dst.chunks.length > 1, "dst is row-chunked");
    const src = Tensor.from(gpu, srcData, [rows.length, d], dtype);
    await scatterRows(dst, src, rows);
    assertClose(await dst.read(), scatterRef(dstData, srcData, rows, d), 0, 0, `scatterRows ${dtype}`);
    // gather then scatter within one tensor: copying row 0 over rows 5..9 (the restore of causal tracing)
    const clean = await gatherRows(dst, Uint32Array.of(0, 0, 0), { outDtype: dtype });
    await scatterRows(dst, clean, Uint32Array.of(5, 6, 7));
    const got = await dst.read();
    for (const r of [5, 6, 7]) assert.deepEqual(got.subarray(r * d, (r + 1) * d), got.subarray(0, d));
    await assert.rejects(() => scatterRows(dst, src, Uint32Array.of(1, 1, 2, 3, 4)), GpuError);
    await assert.rejects(() => scatterRows(dst, src, Uint32Array.of(1, 2, 3, 4, N)), GpuError);
    await assert.rejects(() => scatterRows(dst, dst, Uint32Array.from({ length: N }, (_, i) => i)), GpuError);
    for (const t of [dst, src, clean]) t.dispose();
  }
});
