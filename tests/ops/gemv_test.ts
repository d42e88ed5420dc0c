import assert from "node:assert/strict";
import { type DType, type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { gemv, gemvT } from "../../lib/ops/gemv.ts";
import { gammaBound, gemvReference, type RefResult } from "../../lib/testing/matmul_reference.ts";
import { randArray, roundF16, testGpu } from "../_util.ts";

// Error bound (as in matmul_test.ts): a sum of k products in f32, in any order, is within
// γ_k·Σ|w x| of the exact sum (u = 2^-24); f16 operands are compared against the reference on
// f16-rounded inputs (their products are exact in f32). K-slices of a chunked W add at most one more
// rounding each (γ_{k+chunks}, ≤ 16 chunks below); an f16 result adds u16 = 2^-11 relative plus 2^-25
// absolute (the f16 subnormal spacing is 2^-24).
const U32 = 2 ** -24, U16 = 2 ** -11;

function check(got: Float32Array, ref: RefResult, k: number, out: DType, label: string): void {
  assert.equal(got.length, ref.values.length, `${label}: length`);
  const g = gammaBound(k + 16, U32);
  for (let i = 0; i < got.length; i++) {
    const e = ref.values[i];
    let tol = g * ref.magnitude[i];
    if (out === "f16") tol += U16 * (Math.abs(e) + tol) + 2 ** -25;
    const err = Math.abs(got[i] - e);
    if (!(err <= tol)) {
      throw new Error(`${label}: index ${i}: got ${got[i]}, expected ${e}, |err| ${err} > ${tol}`);
    }
  }
}

function stored(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? roundF16(x) : x;
}

let seed = 100;

interface Case {
  rows: number;
  cols: number;
  layout: "out_in" | "in_out";
  transposed: boolean;
  tw?: DType;
  tx?: DType;
  ty?: DType;
  access?: "coalesced" | "contiguous";
  vec2d?: boolean;
}

/** gemv / gemvT of a stored [rows, cols] W against the reference; returns W's chunk count. */
async function runCase(gpu: Gpu, c: Case): Promise<number> {
  const tw = c.tw ?? "f32", tx = c.tx ?? "f32", ty = c.ty ?? "f32";
  const w = stored(randArray(c.rows * c.cols, seed++), tw);
  const W = Tensor.from(gpu, w, [c.rows, c.cols], tw);
  // which way the sum runs over the stored matrix
  const rowSum = (c.layout === "out_in") !== c.transposed;
  const len = rowSum ? c.cols : c.rows;
  const x = stored(randArray(len, seed++), tx);
  const X = Tensor.from(gpu, x, c.vec2d ? [1, len] : [len], tx);
  const f = c.transposed ? gemvT : gemv;
  const y = await f(W, X, { layout: c.layout, outDtype: ty, access: c.access });
  const outLen = rowSum ? c.rows : c.cols;
  assert.deepEqual(y.shape, c.vec2d ? [1, outLen] : [outLen]);
  assert.equal(y.dtype, ty);
  const ref = gemvReference(w, x, c.rows, c.cols, !rowSum);
  check(await y.read(), ref, len, ty, JSON.stringify(c));
  const chunks = W.chunks.length;
  for (const t of [W, X, y]) t.dispose();
  return chunks;
}

const SHAPES = [[1, 1], [1, 7], [6, 1], [5, 3], [33, 65], [64, 128], [130, 7], [9, 517], [300, 260]];

Deno.test("gemv / gemvT: both layouts, both access patterns, odd shapes and size-1 edges", async () => {
  const gpu = await testGpu();
  for (const access of ["coalesced", "contiguous"] as const) {
    for (const [rows, cols] of SHAPES) {
      for (const layout of ["out_in", "in_out"] as const) {
        for (const transposed of [false, true]) {
          await runCase(gpu, { rows, cols, layout, transposed, access });
        }
      }
    }
  }
});

Deno.test("gemv / gemvT: every storage type combination of W, x and y", async () => {
  const gpu = await testGpu();
  for (const tw of ["f32", "f16"] as const) {
    for (const tx of ["f32", "f16"] as const) {
      for (const ty of ["f32", "f16"] as const) {
        for (const layout of ["out_in", "in_out"] as const) {
          await runCase(gpu, { rows: 70, cols: 132, layout, transposed: false, tw, tx, ty, vec2d: true });
          await runCase(gpu, { rows: 37, cols: 131, layout, transposed: true, tw, tx, ty });
        }
      }
    }
  }
});

Deno.test("gemv / gemvT with W chunked along dim 0 (slices of y, and K-slices summed)", async () => {
  // rows of at most 132 f32 values: a cap of 7 such rows splits W into many chunks
  const gpu = await testGpu({ maxBindingBytes: 132 * 4 * 7 });
  try {
    for (const layout of ["out_in", "in_out"] as const) {
      for (const transposed of [false, true]) {
        for (const ty of ["f32", "f16"] as const) {
          for (const tw of ["f32", "f16"] as const) {
            const chunks = await runCase(gpu, { rows: 61, cols: 132, layout, transposed, tw, ty });
            assert.ok(chunks >= 4, `W has ${chunks} chunks`);
            await runCase(gpu, { rows: 45, cols: 131, layout, transposed, tw, ty, access: "coalesced" });
          }
        }
      }
    }
  } finally {
    await gpu.destroy();
  }
});

Deno.test("gemv: more row groups than one dispatch dimension allows (2-D grid)", async () => {
  const gpu = await testGpu();
  // 65535 workgroups of 4 rows cover 262140 rows
  await runCase(gpu, { rows: 262_150, cols: 2, layout: "out_in", transposed: false, tw: "f16" });
});

Deno.test("gemv: shape and layout errors name the op", async () => {
  const gpu = await testGpu();
  const w = Tensor.zeros(gpu, [4, 6], "f32");
  await assert.rejects(() => gemv(w, Tensor.zeros(gpu, [4], "f32"), { layout: "out_in" }), GpuError);
  await assert.rejects(() => gemvT(w, Tensor.zeros(gpu, [6], "f32"), { layout: "out_in" }), /needs 4/);
  await assert.rejects(
    () => gemv(w, Tensor.zeros(gpu, [2, 6], "f32"), { layout: "out_in" }),
    /\[n\] or \[1, n\]/,
  );
  const bogus = "rows" as unknown as "out_in";
  await assert.rejects(() => gemv(w, Tensor.zeros(gpu, [6], "f32"), { layout: bogus }), /layout/);
  // y = W x with the right shapes works and a given output is used
  const out = Tensor.zeros(gpu, [4], "f32");
  assert.equal(await gemv(w, Tensor.zeros(gpu, [6], "f32"), { layout: "out_in", out }), out);
});
