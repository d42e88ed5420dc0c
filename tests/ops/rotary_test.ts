import assert from "node:assert/strict";
import { type DType, F16_EPS, F32_EPS, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import {
  llama3ScaledInvFreqRef,
  rotaryReference,
  type RotaryRefOptions,
} from "../../lib/testing/attention_reference.ts";
import { applyRotary, rotaryBackward, rotaryInvFreq } from "../../lib/ops/rotary.ts";
import { assertClose, maxAbsDiff, randArray, roundF16, testGpu } from "../_util.ts";

/**
 * Tolerance against the reference with the same (HF, f32) angles: the kernel computes x0·c − x1·s with
 * c, s rounded once to f32 (½ulp each) and one product rounding per term and one for the sum, so
 * |Δ| ≤ 3u·(|x0| + |x1|) ≤ 6u·max|x| with u = F32_EPS (GPU rounding need not be to nearest). An f16 result
 * adds half an f16 ulp of the value (rtol).
 */
function tolerance(x: ArrayLike<number>, dtype: DType): { atol: number; rtol: number } {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return { atol: 6 * F32_EPS * m, rtol: dtype === "f16" ? F16_EPS / 2 : 0 };
}

const CASES: (RotaryRefOptions & { name: string })[] = [
  // GPT-J: interleaved pairs on the first rotary_dim = 8 of head_dim 16; positions up to 4096 + 5
  {
    name: "GPT-J rd8<hd16",
    batch: 2,
    seq: 7,
    heads: 3,
    headDim: 16,
    rotaryDim: 8,
    theta: 1e4,
    interleaved: true,
    positionOffset: [0, 4090],
  },
  // Llama-3: rotate_half over the whole head, theta 5e5
  {
    name: "Llama hd8 θ5e5",
    batch: 2,
    seq: 5,
    heads: 8,
    headDim: 8,
    rotaryDim: 8,
    theta: 5e5,
    interleaved: false,
    positionOffset: [4000, 3],
  },
  {
    name: "Llama hd64 θ1e4",
    batch: 1,
    seq: 33,
    heads: 2,
    headDim: 64,
    rotaryDim: 64,
    theta: 1e4,
    interleaved: false,
    positionOffset: 4064,
  },
  {
    name: "hd128 seq1",
    batch: 3,
    seq: 1,
    heads: 2,
    headDim: 128,
    rotaryDim: 128,
    theta: 1e4,
    interleaved: false,
  },
];

Deno.test("applyRotary matches the f64 reference with HF's f32 angles (both conventions, positions to 4096)", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const [n, c] of CASES.entries()) {
      const raw = randArray(c.batch * c.seq * c.heads * c.headDim, 1 + n, 2);
      const x = dtype === "f16" ? roundF16(raw) : raw;
      const t = Tensor.from(gpu, x, [c.batch * c.seq, c.heads * c.headDim], dtype);
      await applyRotary(t, c);
      const got = await t.read();
      const want = rotaryReference(x, c);
      const tol = tolerance(x, dtype);
      assertClose(got, want, tol.atol, tol.rtol, `${c.name} ${dtype}`);
      if (c.rotaryDim < c.headDim) {
        // the dims past rotary_dim pass through unchanged, bit for bit
        for (let r = 0; r < c.batch * c.seq * c.heads; r++) {
          for (let d = c.rotaryDim; d < c.headDim; d++) {
            assert.equal(got[r * c.headDim + d], x[r * c.headDim + d]);
          }
        }
      }
      t.dispose();
    }
  }
});

Deno.test("rotary angles follow HF's f32 arithmetic; at position 4096 that differs from exact angles", async () => {
  const gpu = await testGpu();
  const c: RotaryRefOptions = {
    batch: 1,
    seq: 8,
    heads: 1,
    headDim: 64,
    rotaryDim: 64,
    theta: 1e4,
    interleaved: false,
    positionOffset: 4089,
  };
  const x = randArray(8 * 64, 7, 1);
  const t = Tensor.from(gpu, x, [8, 64], "f32");
  await applyRotary(t, c);
  const got = await t.read();
  const hf = rotaryReference(x, c);
  const exact = rotaryReference(x, { ...c, angles: "f64" });
  const tol = tolerance(x, "f32");
  assertClose(got, hf, tol.atol, 0, "HF f32 angles");
  // HF rounds the exponent e = 2i/d, θ^e, its reciprocal and pos·inv_freq to f32 (2⁻²⁴ each): the exponent's
  // rounding is amplified by ln θ·e, so |Δangle| ≤ pos·2⁻²⁴·(3·θ^-e + ln θ·e·θ^-e) ≤ pos·2⁻²⁴·(3 + 1/e), and
  // the output moves by ≤ |Δangle|·(|x0| + |x1|) ≤ 2|Δangle| — below 3u·pos·2 with u = 2⁻²³. The kernel
  // must sit on the HF side of that gap.
  const gap = maxAbsDiff(hf, exact);
  assert.ok(gap <= 3 * F32_EPS * 4096 * 2, `f32-angle gap ${gap}`);
  assert.ok(gap > 10 * tol.atol, `f32 and f64 angles should differ visibly at position 4096 (gap ${gap})`);
  // inv_freq as HF computes it (1/θ^(2i/d) in f32): first 1, last θ^-(d-2)/d
  const inv = rotaryInvFreq(1e4, 64);
  assert.equal(inv[0], 1);
  assert.equal(inv[31], Math.fround(1 / Math.fround(1e4 ** Math.fround(62 / 64))));
});

Deno.test("rotary inverse undoes the rotation; rotaryBackward is its transpose and matches finite differences", async () => {
  const gpu = await testGpu();
  for (const c of CASES.slice(0, 2)) {
    const rows = c.batch * c.seq, width = c.heads * c.headDim;
    const x = randArray(rows * width, 20, 1);
    const g = randArray(rows * width, 21, 1);
    const tx = Tensor.from(gpu, x, [rows, width], "f32");
    const tg = Tensor.from(gpu, g, [rows, width], "f32");
    await applyRotary(tx, c);
    const rx = await tx.read();
    await applyRotary(tx, { ...c, inverse: true });
    const tol = tolerance(x, "f32");
    assertClose(await tx.read(), x, 2 * tol.atol, 0, `${c.name} inverse`);
    await rotaryBackward(tg, c);
    const rtg = await tg.read();
    // adjoint identity <R x, g> = <x, Rᵀ g>; each side is a sum of n terms with ≤ 6u relative error
    let lhs = 0, rhs = 0, mag = 0;
    for (let i = 0; i < x.length; i++) {
      lhs += rx[i] * g[i];
      rhs += x[i] * rtg[i];
      mag += Math.abs(x[i] * g[i]);
    }
    assert.ok(Math.abs(lhs - rhs) <= 2 * (6 + x.length) * F32_EPS * mag, `${c.name}: ${lhs} vs ${rhs}`);
    // finite differences of L(x) = <g, R(x)> on the f64 reference (L is linear: central differences are
    // exact up to rounding ~1e-16·|L|/h with h = 1e-3)
    const h = 1e-3;
    for (const i of [0, 1, 5, c.rotaryDim - 1, c.headDim - 1, x.length - 1]) {
      const xp = Float64Array.from(x), xm = Float64Array.from(x);
      xp[i] += h;
      xm[i] -= h;
      const L = (y: Float64Array) => rotaryReference(y, c).reduce((s, v, j) => s + v * g[j], 0);
      const fd = (L(xp) - L(xm)) / (2 * h);
      assert.ok(
        Math.abs(fd - rtg[i]) <= 6 * F32_EPS * 2 + 1e-10,
        `${c.name} d/dx[${i}]: fd ${fd} vs ${rtg[i]}`,
      );
    }
    tx.dispose();
    tg.dispose();
  }
});

Deno.test("interleaved rotary equals rotate_half once the rotated dims are permuted (even | odd)", async () => {
  const gpu = await testGpu();
  const c = { batch: 1, seq: 9, heads: 2, headDim: 16, rotaryDim: 16, theta: 1e4, positionOffset: 100 };
  const x = randArray(9 * 32, 30, 1);
  const perm = (a: ArrayLike<number>) => {
    const out = new Float32Array(a.length);
    for (let r = 0; r < 18; r++) {
      for (let i = 0; i < 8; i++) {
        out[r * 16 + i] = a[r * 16 + 2 * i];
        out[r * 16 + 8 + i] = a[r * 16 + 2 * i + 1];
      }
    }
    return out;
  };
  const a = Tensor.from(gpu, x, [9, 32], "f32");
  const b = Tensor.from(gpu, perm(x), [9, 32], "f32");
  await applyRotary(a, { ...c, interleaved: true });
  await applyRotary(b, { ...c, interleaved: false });
  assert.deepEqual(Array.from(perm(await a.read())), Array.from(await b.read()));
  // and the two conventions really differ on unpermuted input
  const c2 = Tensor.from(gpu, x, [9, 32], "f32");
  await applyRotary(c2, { ...c, interleaved: false });
  assert.ok(maxAbsDiff(await a.read(), await c2.read()) > 0.1);
});

Deno.test("applyRotary works on row-chunked tensors and rejects bad options", async () => {
  const gpu = await testGpu({ maxBindingBytes: 3 * 64 * 4 });
  const c: RotaryRefOptions = {
    batch: 2,
    seq: 5,
    heads: 4,
    headDim: 16,
    rotaryDim: 16,
    theta: 5e5,
    interleaved: false,
    positionOffset: [2, 7],
  };
  const x = randArray(10 * 64, 40, 1);
  const t = Tensor.from(gpu, x, [10, 64], "f32");
  assert.ok(t.chunks.length > 1);
  await applyRotary(t, c);
  assertClose(await t.read(), rotaryReference(x, c), tolerance(x, "f32").atol, 0, "chunked");
  const bad: [Partial<RotaryRefOptions>, RegExp][] = [
    [{ rotaryDim: 7 }, /rotaryDim 7/],
    [{ rotaryDim: 32 }, /rotaryDim 32/],
    [{ seq: 4 }, /is not \[batch·seq/],
    [{ positionOffset: [1] }, /positionOffset/],
    [{ positionOffset: -1 }, /positionOffset/],
    [{ theta: 0 }, /theta/],
  ];
  for (const [o, re] of bad) {
    await assert.rejects(
      applyRotary(t, { ...c, ...o }),
      (e: Error) => e instanceof GpuError && re.test(e.message),
    );
  }
  await gpu.destroy();
});

Deno.test("rope scaling: llama3 and linear inverse frequencies vs an f64 reference; the kernel rotates by them", async () => {
  // The fixtures README's llama3 values (D 16, θ 5e5, factor 8, low 1, high 4, original 64): pair 0 kept,
  // pair 1 smoothed, pairs 2-7 divided by 8.
  const llama3 = {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 64,
  } as const;
  const inv = rotaryInvFreq(5e5, 16, llama3);
  const readme = [1, 0.0794, 0.004701, 9.116e-4, 1.768e-4, 3.428e-5, 6.648e-6, 1.289e-6];
  readme.forEach((v, i) => assert.ok(Math.abs(inv[i] - v) <= 5e-4 * v, `pair ${i}: ${inv[i]} vs ${v}`));
  const base = rotaryInvFreq(5e5, 16);
  const ref = llama3ScaledInvFreqRef(base, 8, 1, 4, 64);
  // f32 steps on the way (wavelength, smooth factor, blend): a few f32 roundings
  assertClose(inv, ref, 0, 8 * F32_EPS, "llama3 inv_freq vs f64");
  assert.equal(inv[0], base[0], "high-frequency pair unchanged");
  assert.equal(inv[5], Math.fround(base[5] / 8), "low-frequency pair divided by factor");
  // Llama 3.2 style: factor 32, original 256, D 8
  const inv32 = rotaryInvFreq(5e5, 8, { ...llama3, factor: 32, originalMaxPositions: 256 });
  [1, 0.007638, 4.419e-5, 1.662e-6].forEach((v, i) =>
    assert.ok(Math.abs(inv32[i] - v) <= 5e-4 * v, `3.2 pair ${i}: ${inv32[i]} vs ${v}`)
  );
  const lin = rotaryInvFreq(1e4, 16, { type: "linear", factor: 4 });
  assertClose(lin, rotaryInvFreq(1e4, 16).map((f) => f / 4), 0, F32_EPS, "linear inv_freq");

  // The kernel with scaling equals the reference rotating by the same (f32) frequencies, and differs
  // visibly from the unscaled rotation.
  const gpu = await testGpu();
  const c = {
    batch: 2,
    seq: 9,
    heads: 2,
    headDim: 16,
    rotaryDim: 16,
    theta: 5e5,
    interleaved: false,
    positionOffset: [0, 300],
  };
  const x = randArray(c.batch * c.seq * c.heads * c.headDim, 31, 1);
  for (const scaling of [llama3, { type: "linear", factor: 4 } as const]) {
    const t = Tensor.from(gpu, x, [c.batch * c.seq, c.heads * c.headDim], "f32");
    await applyRotary(t, { ...c, scaling });
    const got = await t.read();
    t.dispose();
    const want = rotaryReference(x, { ...c, invFreq: rotaryInvFreq(c.theta, 16, scaling) });
    const tol = tolerance(x, "f32");
    assertClose(got, want, tol.atol, 0, `${scaling.type} rotary`);
    assert.ok(
      maxAbsDiff(got, rotaryReference(x, c)) > 1e-2,
      `${scaling.type} scaling must change the rotation`,
    );
  }
  // a scaled and an unscaled table on the same device do not share a cache entry
  const t = Tensor.from(gpu, x, [c.batch * c.seq, c.heads * c.headDim], "f32");
  await applyRotary(t, c);
  assertClose(await t.read(), rotaryReference(x, c), tolerance(x, "f32").atol, 0, "unscaled after scaled");
  t.dispose();
});
