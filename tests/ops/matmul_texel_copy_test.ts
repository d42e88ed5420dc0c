import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { gemmTexel, texelKernels } from "../../lib/ops/matmul_texel.ts";
import { matmulReference, maxError } from "../../lib/testing/matmul_reference.ts";
import { randArray, testGpu } from "../_util.ts";

// f32 operand slices whose rows are 256-byte strided go into their textures by a buffer → texture copy
// instead of the pack kernel. The copy takes whole texels: for op(B) the texels past column n hold what
// follows in the buffer (here NaN), for op(A) a K that is not a multiple of 4 must still be packed (zeros
// past K), and op(B)'s rows past K (K padded to 4) are zero rows written by the pack kernel below the copy.
Deno.test("texel copy: strided f32 slices copied into textures; NaN past n and K never reaches C", async () => {
  const gpu = await testGpu();
  if (!texelKernels(gpu)) {
    console.warn("SKIP texel copy test: not a CPU adapter");
    return;
  }
  const LD = 64, m = 50, n = 61;
  // [k, copied texel operands, dispatches]: K = 40 copies both (mm_texel only); K = 37 packs op(A) and
  // copies op(B) with a 3-row zero tail (pack A, tail, mm_texel)
  for (const [k, dispatches] of [[40, 1], [37, 3]]) {
    const a = randArray(m * LD, 300 + k).map((v, i) => i % LD < k ? v : NaN);
    const b = randArray(k * LD, 400 + k).map((v, i) => i % LD < n ? v : NaN);
    const A = Tensor.from(gpu, a, [m, LD], "f32"), B = Tensor.from(gpu, b, [k, LD], "f32");
    const C = Tensor.zeros(gpu, [m, n], "f32");
    const before = gpu.counters().dispatches;
    await gemmTexel(gpu, {
      a: { buf: A.buffer, dtype: "f32", off: 0, ld: LD, trans: false },
      b: { buf: B.buffer, dtype: "f32", off: 0, ld: LD, trans: false },
      c: { buf: C.buffer, dtype: "f32", off: 0, ld: n },
      m,
      n,
      k,
    });
    assert.equal(gpu.counters().dispatches - before, dispatches, `K = ${k}: dispatches`);
    const got = await C.read();
    let err = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let want = 0;
        for (let p = 0; p < k; p++) want += a[i * LD + p] * b[p * LD + j];
        assert.ok(Number.isFinite(got[i * n + j]), `K = ${k}: C[${i}][${j}] = ${got[i * n + j]}`);
        err = Math.max(err, Math.abs(got[i * n + j] - want));
      }
    }
    assert.ok(err < 1e-4, `K = ${k}: max error ${err}`);
    for (const t of [A, B, C]) t.dispose();
  }
});

// A captured product replays its texture copies: after the inputs change, the replay computes with the new
// values (the copies ran again, in order with the kernel).
Deno.test("texel copy: captured and replayed with the product", async () => {
  const gpu = await testGpu();
  if (!texelKernels(gpu)) {
    console.warn("SKIP texel copy capture test: not a CPU adapter");
    return;
  }
  const m = 8, k = 64, n = 64;
  const a = randArray(m * k, 501), b = randArray(k * n, 502);
  const A = Tensor.from(gpu, a, [m, k], "f32"), B = Tensor.from(gpu, b, [k, n], "f32");
  const C = Tensor.zeros(gpu, [m, n], "f32");
  const spec = {
    a: { buf: A.buffer, dtype: "f32" as const, off: 0, ld: k, trans: false },
    b: { buf: B.buffer, dtype: "f32" as const, off: 0, ld: n, trans: false },
    c: { buf: C.buffer, dtype: "f32" as const, off: 0, ld: n },
    m,
    n,
    k,
  };
  gpu.beginCapture();
  await gemmTexel(gpu, spec);
  const cap = gpu.endCapture();
  try {
    const a2 = a.map((v) => 3 * v);
    const A2 = Tensor.from(gpu, a2, [m, k], "f32");
    gpu.copy(A2.buffer, 0, A.buffer, 0, A.byteLength);
    cap.replay();
    const err = maxError(await C.read(), matmulReference(a2, b, { m, n, k }).values);
    assert.ok(err < 1e-4, `replay with the new A: max error ${err}`);
    A2.dispose();
  } finally {
    cap.dispose();
    for (const t of [A, B, C]) t.dispose();
  }
});
