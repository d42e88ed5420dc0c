import assert from "node:assert/strict";
import { type DType, Tensor } from "../../lib/gpu/mod.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { freezeOperands, isFrozen } from "../../lib/ops/matmul_frozen.ts";
import { matmulReference, maxError } from "../../lib/testing/matmul_reference.ts";
import { randArray, testGpu } from "../_util.ts";

// mm_rows reads a frozen op(B) from a texture packed on first use: the same arithmetic in the same order
// as its storage reads, so results are bit-identical; later products reuse the texture; after release the
// buffer's new contents are read (no stale texture).
Deno.test("frozen operands: mm_rows with op(B) from a packed texture equals the storage path", async () => {
  const gpu = await testGpu();
  if (!gpu.isCpuAdapter) {
    console.warn("SKIP frozen operands test: not a CPU adapter (freezing is a no-op there)");
    return;
  }
  // [m, k, n, transB, B dtype]: copied (ld 64·4 bytes) and packed, split along K (4,999 rows: slices with
  // a remainder whose K is not a multiple of 4), transposed, f16
  const cases: [number, number, number, boolean, DType][] = [
    [5, 256, 192, false, "f32"],
    [5, 4999, 64, false, "f32"],
    [21, 4999, 64, true, "f32"],
    [9, 300, 130, true, "f16"],
    [40, 128, 256, false, "f16"],
  ];
  for (const [m, k, n, transB, tb] of cases) {
    const what = `${m}×${k}·${k}×${n}${transB ? " (Bᵀ)" : ""} ${tb}`;
    const a = randArray(m * k, 10 + m), b = randArray(k * n, 20 + n);
    const A = Tensor.from(gpu, a, [m, k], "f32");
    const B = Tensor.from(gpu, b, transB ? [n, k] : [k, n], tb);
    const run = () => matmul(A, B, { kernel: "rows", transB });
    const plain = await run();
    const want = await plain.read();
    const scope = freezeOperands(gpu, B.chunks);
    assert.ok(isFrozen(gpu, B.buffer));
    let d0 = gpu.counters().dispatches;
    const first = await run();
    const firstDispatches = gpu.counters().dispatches - d0;
    d0 = gpu.counters().dispatches;
    const second = await run();
    const secondDispatches = gpu.counters().dispatches - d0;
    assert.deepEqual(Array.from(await first.read()), Array.from(want), `${what}: first frozen product`);
    assert.deepEqual(Array.from(await second.read()), Array.from(want), `${what}: reused texture`);
    assert.ok(secondDispatches <= firstDispatches, `${what}: the texture is packed once`);
    const ref = matmulReference(a, tb === "f16" ? await B.read() : b, { m, n, k, transB }).values;
    const err = maxError(want, ref);
    assert.ok(err < 1e-3, `${what}: error ${err} against f64`);
    const groups = gpu.cachedGroups;
    scope.release();
    assert.ok(!isFrozen(gpu, B.buffer));
    // the cached bind groups that bound the released texture are forgotten with it
    assert.ok(
      gpu.cachedGroups < groups,
      `${what}: ${gpu.cachedGroups} cached groups after release, ${groups} before`,
    );
    // written after the release: the product reads the new weights
    const b2 = b.map((v) => -2 * v);
    const B2 = Tensor.from(gpu, b2, B.shape, tb);
    const again = freezeOperands(gpu, B2.chunks);
    const x = await matmul(A, B2, { kernel: "rows", transB });
    // (breaking the scope's promise shows the texture is what is read: a write is not seen until release)
    gpu.copy(B.buffer, 0, B2.buffer, 0, B.byteLength);
    const stale = await matmul(A, B2, { kernel: "rows", transB });
    assert.deepEqual(
      Array.from(await stale.read()),
      Array.from(await x.read()),
      `${what}: B read from the texture`,
    );
    again.release();
    const y = await matmul(A, B2, { kernel: "rows", transB });
    assert.deepEqual(
      Array.from(await y.read()),
      Array.from(want),
      `${what}: after release, no stale texture`,
    );
    for (const t of [A, B, B2, plain, first, second, x, stale, y]) t.dispose();
  }
});
