import assert from "node:assert/strict";
import { type DType, type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { linear, linearT, matmul, type MatmulKernel, skinnySplit } from "../../lib/ops/matmul.ts";
import { rowsBlocking, rowsSplit } from "../../lib/ops/matmul_rows.ts";
import {
  gammaBound,
  matmulReference,
  type MatmulRefSpec,
  type RefResult,
} from "../../lib/testing/matmul_reference.ts";
import { randArray, roundF16, testGpu } from "../_util.ts";

// Error bounds. With unit roundoff u (f32: 2^-24), any summation order of k products satisfies
// |ŝ − s| ≤ γ_k Σ|a_i b_i| (γ_k = k·u/(1 − k·u)); scaling by alpha, adding the bias and adding the old C
// are three more roundings, so every f32 result obeys |c − ref| ≤ γ_{k+3} · magnitude, where magnitude =
// Σ|α a b| + |bias| + |c_old| comes from the reference. Operands stored as f16 are compared against the
// reference on f16-rounded inputs (the products of f16 values are exact in f32, so the same bound holds).
// A result stored as f16 adds one rounding of at most u16 = 2^-11 relative, plus 2^-25 absolute for the
// f16 subnormal range.
const U32 = 2 ** -24, U16 = 2 ** -11;

function check(got: Float32Array, ref: RefResult, k: number, out: DType, label: string): void {
  assert.equal(got.length, ref.values.length, `${label}: length`);
  const g = gammaBound(k + 3, U32);
  for (let i = 0; i < got.length; i++) {
    const e = ref.values[i], mag = ref.magnitude[i];
    let tol = g * mag;
    if (out === "f16") tol += U16 * (Math.abs(e) + tol) + 2 ** -25;
    const err = Math.abs(got[i] - e);
    if (!(err <= tol)) {
      throw new Error(`${label}: index ${i}: got ${got[i]}, expected ${e}, |err| ${err} > tol ${tol}`);
    }
  }
}

/** Host data as the GPU stores it. */
function stored(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? roundF16(x) : x;
}

interface Case {
  m: number;
  k: number;
  n: number;
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  aBatched?: boolean;
  bBatched?: boolean;
  bias?: boolean;
  accumulate?: boolean;
  alpha?: number;
  ta?: DType;
  tb?: DType;
  tc?: DType;
  kernel?: MatmulKernel;
  splitK?: boolean;
}

let seed = 1;

/** Runs one product on the GPU and checks it against the f64 reference. */
async function runCase(gpu: Gpu, c: Case): Promise<void> {
  const { m, k, n } = c;
  const batch = c.batch ?? 1;
  const aB = c.aBatched ?? batch > 1, bB = c.bBatched ?? batch > 1;
  const ta = c.ta ?? "f32", tb = c.tb ?? "f32", tc = c.tc ?? "f32";
  const a = stored(randArray((aB ? batch : 1) * m * k, seed++), ta);
  const b = stored(randArray((bB ? batch : 1) * k * n, seed++), tb);
  const aShape = c.transA ? [k, m] : [m, k], bShape = c.transB ? [n, k] : [k, n];
  const A = Tensor.from(gpu, a, aB ? [batch, ...aShape] : aShape, ta);
  const B = Tensor.from(gpu, b, bB ? [batch, ...bShape] : bShape, tb);
  const bias = c.bias ? randArray(n, seed++) : undefined;
  const biasT = bias ? Tensor.from(gpu, bias, [n], "f32") : undefined;
  const outShape = aB || bB ? [batch, m, n] : [m, n];
  const old = c.accumulate ? stored(randArray(batch * m * n, seed++), tc) : undefined;
  const out = old ? Tensor.from(gpu, old, outShape, tc) : undefined;
  const C = await matmul(A, B, {
    transA: c.transA,
    transB: c.transB,
    bias: biasT,
    out,
    outDtype: tc,
    accumulate: c.accumulate,
    alpha: c.alpha,
    kernel: c.kernel,
    splitK: c.splitK,
  });
  assert.deepEqual(C.shape, outShape);
  assert.equal(C.dtype, tc);
  const spec: MatmulRefSpec = { ...c, batch, aBatched: aB, bBatched: bB, bias, c: old };
  const label = JSON.stringify(c);
  check(await C.read(), matmulReference(a, b, spec), k, tc, label);
  for (const t of [A, B, C, biasT]) t?.dispose();
}

const TRANS = [[false, false], [true, false], [false, true], [true, true]] as const;

Deno.test("matmul: every kernel and transpose combination on odd shapes and size-1 edges (f32)", async () => {
  const gpu = await testGpu();
  // k % 4 = 1, 2, 3 and 0 (the masked k tail), m and n around the tile sizes
  const shapes = [[1, 1, 1], [1, 9, 1], [33, 65, 17], [127, 1, 129], [130, 37, 131], [5, 70, 600], [
    41,
    39,
    47,
  ], [6, 12, 5]];
  for (const kernel of ["direct", "texel", "tiled", "skinny", "rows", "naive"] as const) {
    for (const [m, k, n] of shapes) {
      for (const [transA, transB] of TRANS) await runCase(gpu, { m, k, n, transA, transB, kernel });
    }
  }
});

Deno.test("matmul: bias, accumulate and alpha", async () => {
  const gpu = await testGpu();
  for (const kernel of ["auto", "direct", "texel", "tiled", "skinny", "rows", "naive"] as const) {
    await runCase(gpu, { m: 45, k: 19, n: 70, bias: true, kernel });
    await runCase(gpu, { m: 45, k: 19, n: 70, accumulate: true, alpha: -0.5, kernel, transB: true });
    await runCase(gpu, { m: 3, k: 64, n: 9, bias: true, accumulate: true, alpha: 3, kernel, transA: true });
  }
});

Deno.test("matmul: every storage type combination of A, B and C (f32/f16)", async () => {
  const gpu = await testGpu();
  for (const ta of ["f32", "f16"] as const) {
    for (const tb of ["f32", "f16"] as const) {
      for (const tc of ["f32", "f16"] as const) {
        // default kernels (m = 45: direct on CPU adapters, tiled on GPUs; m = 3: skinny); k = 68: vec4
        // reads of A and B (rows are multiples of 4); k = 67: scalar reads and a k tail
        await runCase(gpu, { m: 45, k: 68, n: 29, ta, tb, tc, transB: true, bias: true });
        await runCase(gpu, { m: 45, k: 67, n: 32, ta, tb, tc, accumulate: true });
        await runCase(gpu, { m: 3, k: 67, n: 32, ta, tb, tc, transB: true });
      }
    }
  }
  // the packed-texture kernel packs f16 operands as f32 texels
  await runCase(gpu, { m: 45, k: 67, n: 29, ta: "f16", tb: "f16", tc: "f16", kernel: "texel", transA: true });
  await runCase(gpu, { m: 45, k: 68, n: 29, ta: "f32", tb: "f16", tc: "f32", kernel: "texel", transB: true });
  await runCase(gpu, {
    m: 130,
    k: 5,
    n: 3,
    ta: "f16",
    tb: "f32",
    tc: "f16",
    kernel: "texel",
    accumulate: true,
  });
  // the workgroup-memory kernel stages f16 operands as f32
  await runCase(gpu, { m: 37, k: 67, n: 29, ta: "f16", tb: "f16", tc: "f16", kernel: "tiled", transA: true });
  await runCase(gpu, { m: 37, k: 68, n: 29, ta: "f32", tb: "f16", tc: "f32", kernel: "tiled", transB: true });
});

Deno.test("matmul: batched products, 2-D operands broadcast over the batch", async () => {
  const gpu = await testGpu();
  for (const kernel of ["auto", "direct", "texel", "rows", "naive"] as const) {
    await runCase(gpu, { m: 20, k: 13, n: 36, batch: 3, kernel });
    await runCase(gpu, { m: 40, k: 16, n: 8, batch: 4, transA: true, transB: true, kernel, bias: true });
    await runCase(gpu, { m: 33, k: 12, n: 20, batch: 3, bBatched: false, kernel, transB: true });
    await runCase(gpu, { m: 6, k: 12, n: 20, batch: 2, aBatched: false, kernel, accumulate: true });
  }
  // more batches than one dispatch dimension allows (65535)
  await runCase(gpu, { m: 1, k: 2, n: 1, batch: 65536 + 3 });
});

Deno.test("matmul texel: K beyond one texture (8192 rows) is split and accumulated, f16 C rounded once", async () => {
  const gpu = await testGpu();
  const k = gpu.device.limits.maxTextureDimension2D + 9;
  await runCase(gpu, { m: 41, k, n: 6, kernel: "texel", bias: true });
  await runCase(gpu, {
    m: 41,
    k,
    n: 6,
    kernel: "texel",
    tc: "f16",
    transA: true,
    transB: true,
    accumulate: true,
  });
});

Deno.test("matmul skinny split along K (few rows, long K): every transpose, remainder slice, bias, accumulate, f16", async () => {
  const gpu = await testGpu();
  assert.equal(skinnySplit(21, 256, 50257).slices > 1, true, "the LM head's backward shape is split");
  assert.equal(skinnySplit(21, 50257, 256).slices, 1, "the LM head's forward is not");
  // k = 5003: full slices plus a shorter remainder (k % 4 = 3: masked tail); m, n off the block sizes
  for (const [transA, transB] of TRANS) await runCase(gpu, { m: 5, k: 5003, n: 37, transA, transB });
  await runCase(gpu, { m: 7, k: 8192, n: 64, bias: true, accumulate: true, alpha: -0.5, kernel: "skinny" });
  await runCase(gpu, {
    m: 3,
    k: 4099,
    n: 20,
    ta: "f16",
    tb: "f16",
    tc: "f16",
    transB: true,
    accumulate: true,
  });
});

Deno.test("matmul rows (few rows, op(A) packed): row blocking, split K with remainder, every storage type", async () => {
  const gpu = await testGpu();
  assert.deepEqual(rowsBlocking(21), { rowb: 6, groups: 1 });
  assert.deepEqual(rowsBlocking(60), { rowb: 16, groups: 1 });
  assert.deepEqual(rowsBlocking(70), { rowb: 10, groups: 2 }, "70 rows: two balanced groups of 40");
  assert.ok(rowsSplit(21, 256, 50257).slices > 1, "the LM head's backward is split along K");
  assert.equal(rowsSplit(21, 50257, 256).slices, 1, "the LM head's forward is not");
  // every row-block count (1..4, then even up to 16) and two row groups; n off the 128-column tile;
  // k % 4 = 1, 2, 3, 0
  for (const m of [1, 7, 10, 13, 21, 30, 37, 45, 53, 64]) {
    await runCase(gpu, { m, k: 9 + (m % 4), n: 133, kernel: "rows", transB: m % 2 === 0 });
  }
  await runCase(gpu, { m: 70, k: 38, n: 260, kernel: "rows", bias: true, accumulate: true, alpha: 0.5 });
  // split along K: full slices plus a shorter remainder, every transpose, bias, accumulate, alpha
  for (const [transA, transB] of TRANS) {
    await runCase(gpu, { m: 21, k: 5003, n: 37, transA, transB, kernel: "rows" });
  }
  await runCase(gpu, { m: 60, k: 4098, n: 160, kernel: "rows", bias: true, accumulate: true, alpha: -0.5 });
  await runCase(gpu, { m: 21, k: 5003, n: 37, kernel: "rows", splitK: false, transB: true });
  // storage types: f16 operands are packed / read as f32; an f16 C is rounded once after the K reduction
  for (const [ta, tb, tc] of [["f16", "f16", "f16"], ["f32", "f16", "f32"], ["f16", "f32", "f16"]] as const) {
    await runCase(gpu, { m: 21, k: 4099, n: 45, ta, tb, tc, kernel: "rows", accumulate: true });
    await runCase(gpu, { m: 33, k: 67, n: 29, ta, tb, tc, kernel: "rows", transA: true, bias: true });
    await runCase(gpu, { m: 5, k: 68, n: 300, ta, tb, tc, kernel: "rows", transB: true });
  }
  // K beyond one packed texture row (4 × maxTextureDimension2D elements): pieces accumulate
  await runCase(gpu, {
    m: 3,
    k: 4 * gpu.device.limits.maxTextureDimension2D + 5,
    n: 9,
    kernel: "rows",
    tc: "f16",
  });
});

Deno.test("matmul: shape errors name the op", async () => {
  const gpu = await testGpu();
  const a = Tensor.zeros(gpu, [3, 4], "f32"), b = Tensor.zeros(gpu, [5, 6], "f32");
  await assert.rejects(
    () => matmul(a, b),
    (e: Error) => e instanceof GpuError && /inner dimensions/.test(e.message),
  );
  await assert.rejects(() => matmul(a, b, { transB: true }), GpuError);
  await assert.rejects(() => matmul(a, a, { transB: true, accumulate: true }), /accumulate needs/);
  const bad = Tensor.zeros(gpu, [2, 2], "f32");
  await assert.rejects(() => matmul(a, a, { transB: true, out: bad }), /out has shape/);
  const sq = Tensor.zeros(gpu, [3, 3], "f32");
  await assert.rejects(() => matmul(sq, sq, { out: sq }), /share buffers/);
});

/** Host references of linear / linearT through the matmul reference. */
function linearRef(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  inDim: number,
  outDim: number,
  layout: string,
) {
  return matmulReference(x, w, { m: rows, k: inDim, n: outDim, transB: layout === "out_in" });
}
function linearTRef(
  dy: Float32Array,
  w: Float32Array,
  rows: number,
  inDim: number,
  outDim: number,
  layout: string,
) {
  return matmulReference(dy, w, { m: rows, k: outDim, n: inDim, transB: layout === "in_out" });
}

Deno.test("linear and linearT: both weight layouts, bias, f16 weights, 1-D and 3-D inputs", async () => {
  const gpu = await testGpu();
  const inDim = 24, outDim = 40;
  for (const layout of ["out_in", "in_out"] as const) {
    for (const wt of ["f32", "f16"] as const) {
      const w = stored(randArray(inDim * outDim, seed++), wt);
      const W = Tensor.from(gpu, w, layout === "out_in" ? [outDim, inDim] : [inDim, outDim], wt);
      for (const rows of [1, 7, 50]) {
        const x = randArray(rows * inDim, seed++), bias = randArray(outDim, seed++);
        const X = Tensor.from(gpu, x, [rows, inDim], "f32");
        const ref = matmulReference(x, w, {
          m: rows,
          k: inDim,
          n: outDim,
          transB: layout === "out_in",
          bias,
        });
        const y = await linear(X, W, { layout, bias: Tensor.from(gpu, bias, [outDim], "f32") });
        assert.deepEqual(y.shape, [rows, outDim]);
        check(await y.read(), ref, inDim, "f32", `linear ${layout} ${wt} rows ${rows}`);
        const dy = randArray(rows * outDim, seed++);
        const dx = await linearT(Tensor.from(gpu, dy, [rows, outDim], "f32"), W, { layout, outDtype: "f16" });
        assert.deepEqual(dx.shape, [rows, inDim]);
        check(
          await dx.read(),
          linearTRef(dy, w, rows, inDim, outDim, layout),
          outDim,
          "f16",
          `linearT ${layout}`,
        );
      }
      // x [inDim] → y [outDim]; x [2, 3, inDim] → y [2, 3, outDim]
      const x1 = randArray(inDim, seed++);
      const y1 = await linear(Tensor.from(gpu, x1, [inDim], "f32"), W, { layout });
      assert.deepEqual(y1.shape, [outDim]);
      check(await y1.read(), linearRef(x1, w, 1, inDim, outDim, layout), inDim, "f32", "linear 1-D");
      const x3 = randArray(6 * inDim, seed++);
      const y3 = await linear(Tensor.from(gpu, x3, [2, 3, inDim], "f32"), W, { layout });
      assert.deepEqual(y3.shape, [2, 3, outDim]);
      check(await y3.read(), linearRef(x3, w, 6, inDim, outDim, layout), inDim, "f32", "linear 3-D");
      // accumulate into a given output
      const old = randArray(6 * outDim, seed++);
      const out = Tensor.from(gpu, old, [2, 3, outDim], "f32");
      const got = await linear(Tensor.from(gpu, x3, [2, 3, inDim], "f32"), W, {
        layout,
        out,
        accumulate: true,
      });
      assert.equal(got, out);
      const refAcc = matmulReference(x3, w, {
        m: 6,
        k: inDim,
        n: outDim,
        transB: layout === "out_in",
        c: old,
      });
      check(await out.read(), refAcc, inDim, "f32", "linear accumulate");
    }
  }
});

Deno.test("linear / linearT / matmul with W chunked along dim 0 (tiny binding cap)", async () => {
  // rows of at most 48 f32 values: a cap of 10 rows' bytes splits every weight below into several chunks
  const gpu = await testGpu({ maxBindingBytes: 48 * 4 * 10 });
  try {
    const inDim = 36, outDim = 46, rows = 44;
    for (const layout of ["out_in", "in_out"] as const) {
      for (const wt of ["f32", "f16"] as const) {
        const w = stored(randArray(inDim * outDim, seed++), wt);
        const W = Tensor.from(gpu, w, layout === "out_in" ? [outDim, inDim] : [inDim, outDim], wt);
        assert.ok(W.chunks.length >= 2, `W has ${W.chunks.length} chunks`);
        for (const outDtype of ["f32", "f16"] as const) {
          // every kernel for f32 weights; the default one (and skinny) for f16 weights
          const kernels = wt === "f32" && outDtype === "f32"
            ? ["auto", "texel", "tiled", "skinny", "rows", "naive"] as const
            : ["auto", "texel", "skinny", "rows"] as const;
          for (const kernel of kernels) {
            const x = randArray(rows * inDim, seed++), bias = randArray(outDim, seed++);
            const X = Tensor.from(gpu, x, [rows, inDim], "f32");
            assert.ok(X.chunks.length > 1);
            const old = stored(randArray(rows * outDim, seed++), outDtype);
            const out = Tensor.from(gpu, old, [rows, outDim], outDtype);
            await linear(X, W, {
              layout,
              bias: Tensor.from(gpu, bias, [outDim], "f32"),
              out,
              accumulate: true,
              kernel,
            });
            const ref = matmulReference(x, w, {
              m: rows,
              k: inDim,
              n: outDim,
              transB: layout === "out_in",
              bias,
              c: old,
            });
            check(
              await out.read(),
              ref,
              inDim,
              outDtype,
              `chunked linear ${layout} W ${wt} → ${outDtype} ${kernel}`,
            );
            const dy = randArray(rows * outDim, seed++);
            const dx = await linearT(Tensor.from(gpu, dy, [rows, outDim], "f32"), W, {
              layout,
              outDtype,
              kernel,
            });
            const refT = linearTRef(dy, w, rows, inDim, outDim, layout);
            check(
              await dx.read(),
              refT,
              outDim,
              outDtype,
              `chunked linearT ${layout} W ${wt} → ${outDtype} ${kernel}`,
            );
          }
        }
      }
    }
    // chunked batched operands: the batch is cut at chunk boundaries
    await runCase(gpu, { m: 12, k: 16, n: 12, batch: 9, transA: true, bias: true });
    await runCase(gpu, { m: 12, k: 16, n: 12, batch: 9, bBatched: false, accumulate: true, tc: "f16" });
  } finally {
    await gpu.destroy();
  }
});

Deno.test("linear out_in with a real >128 MiB weight (W f32 [8400, 4096], x [2, 4096])", async () => {
  const gpu = await testGpu();
  const outDim = 8400, inDim = 4096, rows = 2;
  // cheap deterministic values in [-1, 1) without a 34M-element PRNG pass
  const w = new Float32Array(outDim * inDim);
  for (let i = 0; i < w.length; i++) w[i] = (((i * 2654435761) >>> 0) % 2001) / 1000 - 1;
  const W = Tensor.from(gpu, w, [outDim, inDim], "f32");
  assert.ok(W.byteLength > 128 * 2 ** 20);
  assert.ok(W.chunks.length >= 2 || gpu.maxBindingBytes >= W.byteLength);
  const x = randArray(rows * inDim, seed++);
  const y = await linear(Tensor.from(gpu, x, [rows, inDim], "f32"), W, { layout: "out_in" });
  const got = await y.read();
  W.dispose();
  const ref = linearRef(x, w, rows, inDim, outDim, "out_in");
  check(got, ref, inDim, "f32", "linear 137 MB");
});
