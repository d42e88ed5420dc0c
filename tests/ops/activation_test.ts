import assert from "node:assert/strict";
import { type DType, type Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import {
  add,
  addInPlace,
  geluNew,
  geluNewBackward,
  siluMul,
  siluMulBackward,
} from "../../lib/ops/activation.ts";
import {
  centralDiff,
  dot,
  GELU_C,
  GELU_K,
  geluNewBackwardRef,
  geluNewRef,
  siluMulBackwardRef,
  siluMulRef,
} from "../../lib/testing/transformer_reference.ts";
import { assertClose, randArray, roundF16, testGpu } from "../_util.ts";

const U32 = 2 ** -24; // unit roundoff of f32 (GPU math)
const U16 = 2 ** -11; // one rounding to an f16 output, relative

const maxOf = (n: number, f: (i: number) => number): number => {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, f(i));
  return m;
};

function upload(gpu: Gpu, v: Float32Array, shape: number[], dtype: DType): [Tensor, Float32Array] {
  return [Tensor.from(gpu, v, shape, dtype), dtype === "f16" ? roundF16(v) : v];
}

// Error model: WGSL's exp(x) is accurate to 3 + 2|x| ulp. tanh is computed as (1 − e)/(1 + e) with
// e = exp(−2|u|), so |Δtanh| ≤ 2·(3 + 4|u|)·e·u + 4u ≤ 12u (since |u|·e^(−2|u|) ≤ 0.19). σ(g) = 1/(1 + e^(−g))
// has relative error ≤ (5 + 2|g|)·u. A few further products/sums add ≤ 1 u each.

/** |Δ gelu_new(x)| ≤ 0.5|x|·|Δt| + 3u|y| ≤ 9u·|x|. */
function geluTol(x: Float32Array): number {
  return 10 * U32 * maxOf(x.length, (i) => Math.abs(x[i]));
}

/** |Δ gelu_new'(x)·dy| ≤ |dy|·(0.5·12u + 0.5|x|·k(1 + 3c·x²)·24u + 4u·|gelu'|). */
function geluBwdTol(x: Float32Array, dy: Float32Array): number {
  return U32 * maxOf(x.length, (i) => {
    const v = Math.abs(x[i]), u = GELU_K * (v + GELU_C * v ** 3);
    const slope = u > 20 ? 0 : 0.5 * v * GELU_K * (1 + 3 * GELU_C * v * v);
    return Math.abs(dy[i]) * (6 + 24 * slope + 8);
  });
}

const SIZES = [1, 3, 65, 257];

Deno.test("geluNew forward/backward match the f64 reference; the reference matches central differences", async () => {
  const gpu = await testGpu();
  for (const d of SIZES) {
    const rows = 3, n = rows * d;
    // inputs in [−6, 6] reach both tanh tails
    const x = randArray(n, d, 6), dy = randArray(n, d + 1);
    // (1) f64: gradient of L(x) = Σ dy·gelu(x) by central differences, h = 1e-4: truncation
    // h²/6·|gelu‴|·|dy| ≤ 2e-9 (|gelu‴| ≤ 1.2), roundoff 2^-53·|L|/h ≤ 1e-9 → tolerance 1e-7.
    const g = geluNewBackwardRef(x, dy);
    assertClose(g, centralDiff((xs) => dot(dy, geluNewRef(xs)), x, 1e-4), 1e-7, 0, `gelu FD d=${d}`);
    // (2) GPU vs reference on what the tensors hold; f16 outputs add one f16 rounding (rtol).
    for (const dtype of ["f32", "f16"] as const) {
      const [tx, xv] = upload(gpu, x, [rows, d], dtype);
      const [tg, gv] = upload(gpu, dy, [rows, d], dtype);
      const y = await geluNew(tx);
      assert.equal(y.dtype, dtype);
      const rtol = dtype === "f16" ? U16 : 0;
      assertClose(await y.read(), geluNewRef(xv), geluTol(xv), rtol, `gelu ${dtype} d=${d}`);
      const dx = await geluNewBackward(tx, tg);
      assert.equal(dx.dtype, "f32");
      assertClose(await dx.read(), geluNewBackwardRef(xv, gv), geluBwdTol(xv, gv), 0, `gelu' ${dtype}`);
      for (const t of [tx, tg, y, dx]) t.dispose();
    }
  }
});

Deno.test("geluNew stays finite and exact in the tails (|x| up to 1e4)", async () => {
  const gpu = await testGpu();
  const x = new Float32Array([-1e4, -300, -30, -10, 0, 10, 30, 300, 1e4]);
  const tx = Tensor.from(gpu, x, [9], "f32");
  const y = await (await geluNew(tx)).read();
  const dx = await (await geluNewBackward(tx, Tensor.from(gpu, new Float32Array(9).fill(1), [9], "f32")))
    .read();
  // gelu(x) = x and gelu'(x) = 1 for x ≫ 0; 0 and 0 for x ≪ 0 (|x| ≥ 10: tanh = ±1 in f32 and f64)
  assertClose(y, [0, 0, 0, 0, 0, 10, 30, 300, 1e4], 0, 0, "gelu tails");
  assertClose(dx, [0, 0, 0, 0, 0.5, 1, 1, 1, 1], 0, 0, "gelu' tails");
});

Deno.test("siluMul forward/backward match the f64 reference; the reference matches central differences", async () => {
  const gpu = await testGpu();
  for (const d of SIZES) {
    const rows = 3, n = rows * d;
    const gate = randArray(n, 10 + d, 8), up = randArray(n, 20 + d, 2), dh = randArray(n, 30 + d);
    // (1) f64 FD of L = Σ dh·silu(g)·up w.r.t. gate and up (h = 1e-4; |silu‴| ≤ 0.6, |up| ≤ 2 →
    // truncation ≤ 2e-9, roundoff ≤ 1e-9).
    const ref = siluMulBackwardRef(gate, up, dh);
    const fdG = centralDiff((gs) => dot(dh, siluMulRef(gs, up)), gate, 1e-4);
    const fdU = centralDiff((us) => dot(dh, siluMulRef(gate, us)), up, 1e-4);
    assertClose(ref.dGate, fdG, 1e-7, 0, `silu dGate FD d=${d}`);
    assertClose(ref.dUp, fdU, 1e-7, 0, `silu dUp FD d=${d}`);
    for (const dtype of ["f32", "f16"] as const) {
      const [tg, g] = upload(gpu, gate, [rows, d], dtype);
      const [tu, u] = upload(gpu, up, [rows, d], "f32"); // mixed storage: up stays f32
      const [th, h] = upload(gpu, dh, [rows, d], dtype);
      const G = maxOf(n, (i) => Math.abs(g[i]));
      // y = g·σ(g)·up: relative error ≤ (5 + 2|g|)u from σ, +2u for the products; f16 out adds U16
      const y = await siluMul(tg, tu);
      assert.equal(y.dtype, dtype);
      const rel = (8 + 2 * G) * U32 + (dtype === "f16" ? U16 : 0);
      assertClose(await y.read(), siluMulRef(g, u), 0, rel, `silu ${dtype} d=${d}`);
      const want = siluMulBackwardRef(g, u, h);
      const got = await siluMulBackward(tg, tu, th);
      // dGate = dh·up·σ·(1 + g(1 − σ)): the bracket may cancel, so bound absolutely by the terms' size
      const atol = (10 + 2 * G) * U32 * maxOf(n, (i) => Math.abs(h[i] * u[i]) * (1 + 2 * Math.abs(g[i])));
      assertClose(await got.dGate.read(), want.dGate, atol, 0, `silu dGate ${dtype} d=${d}`);
      assertClose(await got.dUp.read(), want.dUp, 0, (8 + 2 * G) * U32, `silu dUp ${dtype} d=${d}`);
      for (const t of [tg, tu, th, y, got.dGate, got.dUp]) t.dispose();
    }
  }
});

Deno.test("add and addInPlace: any dtype mix, chunked operands, one rounding", async () => {
  const rows = 13, d = 65;
  // binding cap of 3 f32 rows: f32 operands have 5 chunks, f16 ones 3 (6 rows each)
  const gpu = await testGpu({ maxBindingBytes: 3 * d * 4 });
  const a = randArray(rows * d, 1, 3), b = randArray(rows * d, 2, 3);
  for (
    const [da, db, dout] of [["f32", "f16", "f32"], ["f16", "f32", "f16"], ["f16", "f16", "f32"]] as const
  ) {
    const [ta, av] = upload(gpu, a, [rows, d], da);
    const [tb, bv] = upload(gpu, b, [rows, d], db);
    assert.equal(ta.chunks.length, da === "f32" ? 5 : 3);
    const want = av.map((v, i) => v + bv[i]);
    // exact f32 inputs summed in f32 (≤ 1 u) and stored (f16: ≤ U16 more)
    const rtol = U32 + (dout === "f16" ? U16 : 0);
    const y = await add(ta, tb, { outDtype: dout });
    assert.equal(y.dtype, dout);
    assertClose(await y.read(), want, 0, rtol, `add ${da}+${db}→${dout}`);
    await addInPlace(ta, tb); // a += b stored as a's dtype
    assertClose(await ta.read(), want, 0, U32 + (da === "f16" ? U16 : 0), `addInPlace ${da}+=${db}`);
  }
  // y += y doubles (the aliasing case)
  const t = Tensor.from(gpu, a, [rows, d], "f32");
  await addInPlace(t, t);
  assertClose(await t.read(), a.map((v) => 2 * v), 0, 0, "y += y");
  // geluNew and siluMul on chunked inputs with a different output chunking
  const [tx, xv] = upload(gpu, a, [rows, d], "f32");
  const [tu, uv] = upload(gpu, b, [rows, d], "f16");
  assertClose(await (await geluNew(tx, { outDtype: "f16" })).read(), geluNewRef(xv), geluTol(xv), U16);
  const rel = (8 + 2 * 3) * U32;
  assertClose(await (await siluMul(tx, tu)).read(), siluMulRef(xv, uv), 0, rel, "chunked siluMul");
  await gpu.destroy();
});

Deno.test("activations reject mismatched shapes with a GpuError", async () => {
  const gpu = await testGpu();
  const a = Tensor.zeros(gpu, [2, 4], "f32"), b = Tensor.zeros(gpu, [4, 2], "f32");
  await assert.rejects(() => add(a, b), GpuError);
  await assert.rejects(() => addInPlace(a, b), GpuError);
  await assert.rejects(() => siluMulBackward(a, a, b), GpuError);
  await assert.rejects(() => geluNewBackward(a, b), GpuError);
});
