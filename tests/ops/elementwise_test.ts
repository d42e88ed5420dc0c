import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { axpy, cast, countNonFinite, scale } from "../../lib/ops/elementwise.ts";
import { assertClose, randArray, roundF16, testGpu } from "../_util.ts";

Deno.test("axpy and scale match the TS reference in f32 and f16, across chunks", async () => {
  for (const dtype of ["f32", "f16"] as const) {
    // a tiny binding cap forces several chunks (rows of 37 values)
    const gpu = await testGpu({ maxBindingBytes: 37 * 4 * 5 });
    const x = randArray(23 * 37, 1), y = randArray(23 * 37, 2);
    const tx = Tensor.from(gpu, x, [23, 37], dtype), ty = Tensor.from(gpu, y, [23, 37], dtype);
    assert.ok(ty.chunks.length > 1);
    await axpy(ty, 0.5, tx);
    await scale(ty, -2);
    const got = await ty.read();
    const xr = dtype === "f16" ? roundF16(x) : x, yr = dtype === "f16" ? roundF16(y) : y;
    const want = yr.map((v, i) => -2 * (v + 0.5 * xr[i]));
    const eps = dtype === "f16" ? 2 ** -11 : 2 ** -24;
    // two rounding steps of at most |value|·eps each, values ≤ 3 in magnitude
    assertClose(got, want, 2 * 3 * eps * 2, 0, `axpy/scale ${dtype}`);
    await gpu.destroy();
  }
});

Deno.test("cast f32→f16→f32 rounds to nearest even like Float16Array", async () => {
  const gpu = await testGpu();
  const x = randArray(1001, 3, 100);
  const t = Tensor.from(gpu, x, [1001], "f32");
  const h = await cast(t, "f16");
  assert.equal(h.dtype, "f16");
  const back = await cast(h, "f32");
  assert.deepEqual(Array.from(await back.read()), Array.from(roundF16(x)));
});

Deno.test("countNonFinite finds NaN and ±inf in f32 and f16", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    const x = randArray(5000, 4);
    x[7] = NaN;
    x[4000] = Infinity;
    x[4999] = -Infinity;
    const t = Tensor.from(gpu, x, [5000], dtype);
    assert.equal(await countNonFinite(t), 3);
    t.write(randArray(5000, 5));
    assert.equal(await countNonFinite(t), 0);
  }
  // values beyond f16 range become inf when stored as f16
  const big = Tensor.from(gpu, [1, 70000, -1e6], [3], "f16");
  assert.equal(await countNonFinite(big), 2);
});
