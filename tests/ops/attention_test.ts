import assert from "node:assert/strict";
import { type DType, F16_EPS, F32_EPS, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  attentionTiles,
  KvCache,
} from "../../lib/ops/attention.ts";
import {
  attentionBackwardReference,
  attentionProbs,
  attentionQueryValid,
  attentionReference,
  type AttentionRefOptions,
  attentionVisible,
} from "../../lib/testing/attention_reference.ts";
import { applyRotary } from "../../lib/ops/rotary.ts";
import { assertClose, maxAbsDiff, randArray, roundF16, testGpu } from "../_util.ts";

// Unit roundoff used in the bounds: F32_EPS (2^-23, twice the round-to-nearest unit, since GPU arithmetic
// need not round to nearest) and half an f16 ulp for the final store of an f16 output.
const U = F32_EPS;
const U16 = F16_EPS / 2;

interface Case extends AttentionRefOptions {
  name: string;
}

interface Data {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/** Peaked random inputs: q, k uniform in [-3, 3) (scores up to ~10), v in [-1, 1). f16: pre-rounded. */
function makeData(c: AttentionRefOptions, seed: number, dtype: DType): Data {
  const r = (a: Float32Array) => dtype === "f16" ? roundF16(a) : a;
  return {
    q: r(randArray(c.batch * c.seqQ * c.heads * c.headDim, seed, 3)),
    k: r(randArray(c.batch * c.seqKv * c.kvHeads * c.headDim, seed + 1, 3)),
    v: r(randArray(c.batch * c.seqKv * c.kvHeads * c.headDim, seed + 2, 1)),
  };
}

function upload(gpu: Tensor["gpu"], c: AttentionRefOptions, d: Data, dtype: DType) {
  return {
    q: Tensor.from(gpu, d.q, [c.batch * c.seqQ, c.heads * c.headDim], dtype),
    k: Tensor.from(gpu, d.k, [c.batch * c.seqKv, c.kvHeads * c.headDim], dtype),
    v: Tensor.from(gpu, d.v, [c.batch * c.seqKv, c.kvHeads * c.headDim], dtype),
  };
}

/**
 * Worst-case error of an f32 score s = scale·Σ_d q_d k_d: the q·scale rounding plus a length-hd dot product
 * give |Δs| ≤ (hd + 2)·u·scale·Σ_d |q_d k_d| (standard γ_n bound); the max over all (query, key) pairs.
 */
function scoreError(c: AttentionRefOptions, d: Data): number {
  const scale = c.scale ?? 1 / Math.sqrt(c.headDim);
  const hd = c.headDim, grp = c.heads / c.kvHeads;
  let worst = 0;
  for (let b = 0; b < c.batch; b++) {
    for (let h = 0; h < c.heads; h++) {
      for (let i = 0; i < c.seqQ; i++) {
        for (let j = 0; j < c.seqKv; j++) {
          let s = 0;
          const qo = (b * c.seqQ + i) * c.heads * hd + h * hd;
          const ko = (b * c.seqKv + j) * c.kvHeads * hd + Math.floor(h / grp) * hd;
          for (let e = 0; e < hd; e++) s += Math.abs(d.q[qo + e] * d.k[ko + e]);
          worst = Math.max(worst, s);
        }
      }
    }
  }
  return (hd + 2) * U * scale * worst;
}

/**
 * Forward tolerance. out = Σ_j p_j v_j; a score error δs moves it by ≤ Σ_j p_j |v_j − out| δs ≤ 2·max|v|·δs.
 * The f32 sum over ≤ seqKv keys, the online-softmax rescalings (one per 8-key tile), exp's few-ulp error
 * (WGSL: 3 + 2|x| ulp; p·|x| ≤ 1/e) and the division by the sum add ≤ (2·seqKv + 16)·u·max|v|.
 * An f16 output adds half an f16 ulp of the value.
 */
function forwardTolerance(c: AttentionRefOptions, d: Data): number {
  let vmax = 0;
  for (const x of d.v) vmax = Math.max(vmax, Math.abs(x));
  return vmax * (2 * scoreError(c, d) + (2 * c.seqKv + 16) * U);
}

/** Checks the rows of real queries against the reference and that every row (padded ones too) is finite. */
function checkForward(got: Float32Array, c: AttentionRefOptions, d: Data, outDtype: DType, label: string) {
  const want = attentionReference(d.q, d.k, d.v, c);
  const atol = forwardTolerance(c, d);
  const rtol = outDtype === "f16" ? U16 : 0;
  const row = c.heads * c.headDim;
  for (let b = 0; b < c.batch; b++) {
    for (let i = 0; i < c.seqQ; i++) {
      const at = (b * c.seqQ + i) * row;
      const g = got.subarray(at, at + row);
      assert.ok(g.every(Number.isFinite), `${label}: row ${b}/${i} is not finite`);
      if (attentionQueryValid(c, b, i)) {
        assertClose(g, want.subarray(at, at + row), atol, rtol, `${label} row ${b}/${i}`);
      }
    }
  }
}

const FORWARD_CASES: Case[] = [
  {
    name: "GQA 8/2 hd8 S33 padded",
    batch: 2,
    seqQ: 33,
    seqKv: 33,
    heads: 8,
    kvHeads: 2,
    headDim: 8,
    kvLengths: [33, 17],
  },
  { name: "MHA hd16 S5", batch: 1, seqQ: 5, seqKv: 5, heads: 4, kvHeads: 4, headDim: 16 },
  {
    name: "MQA hd32 S130 padded",
    batch: 3,
    seqQ: 130,
    seqKv: 130,
    heads: 2,
    kvHeads: 1,
    headDim: 32,
    kvLengths: [130, 1, 77],
  },
  { name: "hd64 S1", batch: 2, seqQ: 1, seqKv: 1, heads: 4, kvHeads: 2, headDim: 64 },
  {
    name: "hd128 S130 padded",
    batch: 2,
    seqQ: 130,
    seqKv: 130,
    heads: 2,
    kvHeads: 1,
    headDim: 128,
    kvLengths: [130, 40],
  },
  {
    name: "seqQ < seqKv, explicit offsets",
    batch: 2,
    seqQ: 6,
    seqKv: 13,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    kvLengths: [13, 10],
    queryOffset: [7, 4],
  },
  { name: "seqQ < seqKv, default offset", batch: 1, seqQ: 5, seqKv: 33, heads: 2, kvHeads: 2, headDim: 8 },
];

Deno.test("attention forward matches the f64 reference: GQA/MHA, head_dim 8–128, odd lengths, padding", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const [n, c] of FORWARD_CASES.entries()) {
      const d = makeData(c, 10 + n, dtype);
      const t = upload(gpu, c, d, dtype);
      const out = await attention(t.q, t.k, t.v, c);
      assert.equal(out.dtype, dtype);
      checkForward(await out.read(), c, d, dtype, `${c.name} ${dtype}`);
      if (dtype === "f16" && n === 0) {
        // f16 storage, f32 output: only the f32 bound remains
        const o32 = await attention(t.q, t.k, t.v, { ...c, outDtype: "f32" });
        assert.equal(o32.dtype, "f32");
        checkForward(await o32.read(), c, d, "f32", `${c.name} f16→f32`);
        o32.dispose();
      }
      for (const x of [out, t.q, t.k, t.v]) x.dispose();
    }
  }
});

Deno.test("attention forward: Mistral sliding window (seq 20 > window 8) with GQA and padding", async () => {
  const gpu = await testGpu();
  const c: AttentionRefOptions = {
    batch: 2,
    seqQ: 20,
    seqKv: 20,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    kvLengths: [20, 13],
    window: 8,
  };
  for (const dtype of ["f32", "f16"] as const) {
    const d = makeData(c, 30, dtype);
    const t = upload(gpu, c, d, dtype);
    const out = await (await attention(t.q, t.k, t.v, c)).read();
    checkForward(out, c, d, dtype, `window ${dtype}`);
    // the window must matter: without it the late rows differ by far more than the tolerance
    const full = attentionReference(d.q, d.k, d.v, { ...c, window: null });
    assert.ok(maxAbsDiff(out, full) > 100 * forwardTolerance(c, d), "window had no effect");
  }
  // a query sees exactly `window` keys including itself
  assert.equal([...Array(20).keys()].filter((j) => attentionVisible(c, 0, 15, j)).length, 8);
});

Deno.test("KV-cache decoding (rotary offsets per row, window) reproduces the full prefill rows", async () => {
  await kvCacheDecode(16, "auto");
});

Deno.test("KV-cache decoding at head_dim 256 (GPT-J, partial rotary 64) with both kernel designs", async () => {
  for (const kernel of ["tiled", "row"] as const) await kvCacheDecode(256, kernel, 64);
});

/** Prefill + decode through a {@link KvCache} against the full-sequence attention of the same rows. */
async function kvCacheDecode(headDim: number, kernel: AttentionOptions["kernel"], rotaryDim = headDim) {
  const gpu = await testGpu();
  const c: AttentionRefOptions & { kernel: AttentionOptions["kernel"] } = {
    batch: 2,
    seqQ: 20,
    seqKv: 20,
    heads: 4,
    kvHeads: 2,
    headDim,
    window: 8,
    kernel,
  };
  const rot = { headDim, rotaryDim, theta: 1e4, interleaved: false };
  const d = makeData(c, 40, "f32");
  const qs = c.heads * c.headDim, kvs = c.kvHeads * c.headDim;
  // full prefill: rotary at positions 0..19, then attention over all rows
  const full = upload(gpu, c, d, "f32");
  await applyRotary(full.q, { ...rot, batch: 2, seq: 20, heads: c.heads });
  await applyRotary(full.k, { ...rot, batch: 2, seq: 20, heads: c.kvHeads });
  const fullOut = await (await attention(full.q, full.k, full.v, c)).read();

  // rows of the full inputs at position pos[b] + i for i < n, per batch row
  const take = (src: Float32Array, width: number, pos: number[], n: number) => {
    const out = new Float32Array(c.batch * n * width);
    for (let b = 0; b < c.batch; b++) {
      for (let i = 0; i < n; i++) {
        const p = Math.min(pos[b] + i, 19);
        out.set(src.subarray((b * 20 + p) * width, (b * 20 + p + 1) * width), (b * n + i) * width);
      }
    }
    return out;
  };
  const cache = new KvCache(gpu, { layers: 2, batch: 2, maxLen: 20, kvHeads: 2, headDim, dtype: "f32" });
  const lengths = [5, 3]; // right-padded prompts: prefill 5 rows per batch row, row 1 has 2 padding rows
  const got: Float32Array[] = [new Float32Array(20 * qs), new Float32Array(20 * qs)];
  let n = 5;
  for (let step = 0; cache.lengths[0] < 20; step++) {
    const pos = [...cache.lengths];
    const q = Tensor.from(gpu, take(d.q, qs, pos, n), [2 * n, qs], "f32");
    const k = Tensor.from(gpu, take(d.k, kvs, pos, n), [2 * n, kvs], "f32");
    const v = Tensor.from(gpu, take(d.v, kvs, pos, n), [2 * n, kvs], "f32");
    await applyRotary(q, { ...rot, batch: 2, seq: n, heads: c.heads, positionOffset: pos });
    await applyRotary(k, { ...rot, batch: 2, seq: n, heads: c.kvHeads, positionOffset: pos });
    for (let layer = 0; layer < 2; layer++) cache.append(layer, k, v, n);
    const s = cache.attentionOptions(n);
    const real = step === 0 ? lengths : [1, 1];
    // the prefill's padded rows are masked by the real lengths
    if (step === 0) s.kvLengths = lengths.slice();
    const out = await (await attention(q, cache.k[1], cache.v[1], { ...c, ...s })).read();
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < real[b]; i++) {
        const p = pos[b] + i;
        got[b].set(out.subarray((b * n + i) * qs, (b * n + i + 1) * qs), p * qs);
      }
    }
    cache.advance(real);
    n = 1;
    for (const t of [q, k, v]) t.dispose();
    if (cache.lengths[1] >= 20) break;
  }
  assert.deepEqual(cache.lengths, [20, 18]);
  // same kernel, same data: only the key-tile grouping of the online softmax differs
  const tol = forwardTolerance(c, d);
  for (let b = 0; b < 2; b++) {
    const rows = cache.lengths[b];
    assertClose(
      got[b].subarray(0, rows * qs),
      fullOut.subarray(b * 20 * qs, (b * 20 + rows) * qs),
      tol,
      0,
      `decode hd${headDim} ${kernel} row ${b}`,
    );
  }
  assert.throws(() => cache.advance(1), GpuError);
  cache.dispose();
}

/** f64 loss L = Σ dOut ∘ attention(q, k, v) for finite differences. */
function loss(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dOut: Float32Array,
  c: AttentionRefOptions,
) {
  const o = attentionReference(q, k, v, c);
  let s = 0;
  for (let i = 0; i < o.length; i++) s += o[i] * dOut[i];
  return s;
}

Deno.test("attention backward reference equals central finite differences of the f64 forward", () => {
  const cases: AttentionRefOptions[] = [
    { batch: 2, seqQ: 6, seqKv: 6, heads: 4, kvHeads: 2, headDim: 4, kvLengths: [6, 4], window: 3 },
    { batch: 1, seqQ: 2, seqKv: 7, heads: 2, kvHeads: 1, headDim: 4, queryOffset: [5], kvLengths: [7] },
  ];
  for (const [n, c] of cases.entries()) {
    const d = makeData(c, 50 + n, "f32");
    const dOut = randArray(d.q.length, 60 + n);
    const g = attentionBackwardReference(d.q, d.k, d.v, dOut, c);
    // h = 1e-4: truncation h²·|L'''|/6 with |L'''| ≲ 1e2 for these peaked scores gives ~1e-7, rounding
    // ~1e-16·|L|/h ~ 1e-11; 1e-6 absolute leaves margin and is far below any structural error.
    const h = 1e-4;
    for (const [name, x, grad] of [["q", d.q, g.dq], ["k", d.k, g.dk], ["v", d.v, g.dv]] as const) {
      const fd = new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const xp = Float64Array.from(x), xm = Float64Array.from(x);
        xp[i] += h;
        xm[i] -= h;
        const args = (y: Float64Array) =>
          name === "q" ? [y, d.k, d.v] : name === "k" ? [d.q, y, d.v] : [d.q, d.k, y];
        const [a1, b1, c1] = args(xp), [a2, b2, c2] = args(xm);
        fd[i] = (loss(a1, b1, c1, dOut, c) - loss(a2, b2, c2, dOut, c)) / (2 * h);
      }
      assertClose(grad, fd, 1e-6, 0, `d${name} case ${n}`);
      assert.ok(grad.some((x) => Math.abs(x) > 1e-2), `d${name} case ${n} is trivially zero`);
    }
  }
});

/**
 * Backward tolerance, per element. With P the probabilities, |dP|ᵢⱼ = Σ_d |dOut_id v_jd| and
 * |D|ᵢ = Σ_d |dOut_id out_id|, every rounding error of dS_ij = P_ij (dP_ij − D_i) is bounded by
 * ε·P_ij (|dP|ᵢⱼ + |D|ᵢ), where ε collects: the relative error of the recomputed P (the score error δs in
 * both the score and the forward's logsumexp, plus exp/log ulps: ε_P = 2δs + 16u), the length-hd dots of dP
 * and D (hd·u each), the forward output inside D (2δs + (2·seqKv + 16)u), and the sums over ≤ seqKv keys (dq)
 * or ≤ group·seqQ queries (dk, dv). So |Δdq_id| ≤ ε·scale·Σ_j P_ij(|dP|+|D|)|k_jd|,
 * |Δdk_jd| ≤ ε·scale·Σ_i P_ij(|dP|+|D|)|q_id| and |Δdv_jd| ≤ ε·Σ_i P_ij|dOut_id|: the backward formulas
 * evaluated on absolute values.
 */
function backwardBounds(d: Data, dOut: Float32Array, c: AttentionRefOptions) {
  const { batch, seqQ, seqKv, heads, kvHeads, headDim: hd } = c;
  const scale = c.scale ?? 1 / Math.sqrt(hd);
  const ds = scoreError(c, d);
  const nQ = (heads / kvHeads) * seqQ;
  const eps = 2 * (2 * ds + 16 * U) + 2 * ds + 2 * (hd + seqKv + nQ + 16) * U;
  const out = attentionReference(d.q, d.k, d.v, c);
  const gq = new Float64Array(d.q.length),
    gk = new Float64Array(d.k.length),
    gv = new Float64Array(d.v.length);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      for (let i = 0; i < seqQ; i++) {
        const p = attentionProbs(d.q, d.k, c, b, h, i);
        const qo = (b * seqQ + i) * heads * hd + h * hd;
        let dAbs = 0;
        for (let e = 0; e < hd; e++) dAbs += Math.abs(dOut[qo + e] * out[qo + e]);
        for (let j = 0; j < seqKv; j++) {
          if (p[j] === 0) continue;
          const ko = (b * seqKv + j) * kvHeads * hd + g * hd;
          let dp = 0;
          for (let e = 0; e < hd; e++) dp += Math.abs(dOut[qo + e] * d.v[ko + e]);
          const w = p[j] * (dp + dAbs) * scale;
          for (let e = 0; e < hd; e++) {
            gq[qo + e] += w * Math.abs(d.k[ko + e]);
            gk[ko + e] += w * Math.abs(d.q[qo + e]);
            gv[ko + e] += p[j] * Math.abs(dOut[qo + e]);
          }
        }
      }
    }
  }
  return { ref: attentionBackwardReference(d.q, d.k, d.v, dOut, c), eps, dq: gq, dk: gk, dv: gv };
}

/** |got − want| ≤ eps·bound + tiny elementwise (tiny: 1e-30 keeps exact-zero entries exact). */
function assertWithin(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  eps: number,
  bound: ArrayLike<number>,
  label: string,
) {
  assert.equal(got.length, want.length, label);
  for (let i = 0; i < got.length; i++) {
    const tol = eps * bound[i] + 1e-30;
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      throw new Error(`${label}: index ${i}: got ${got[i]}, expected ${want[i]} (tolerance ${tol})`);
    }
  }
}

const BACKWARD_CASES: Case[] = [
  {
    name: "GQA 8/2 hd8 S33 padded window",
    batch: 2,
    seqQ: 33,
    seqKv: 33,
    heads: 8,
    kvHeads: 2,
    headDim: 8,
    kvLengths: [33, 21],
    window: 8,
  },
  {
    name: "MQA hd32 S130",
    batch: 1,
    seqQ: 130,
    seqKv: 130,
    heads: 2,
    kvHeads: 1,
    headDim: 32,
    kvLengths: [100],
  },
  { name: "MHA hd128 S33", batch: 1, seqQ: 33, seqKv: 33, heads: 2, kvHeads: 2, headDim: 128 },
  {
    name: "decode step",
    batch: 2,
    seqQ: 1,
    seqKv: 13,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    kvLengths: [13, 6],
    queryOffset: [12, 5],
  },
];

Deno.test("attention backward on the GPU matches the f64 reference backward (f32 and f16 inputs)", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const [n, c] of BACKWARD_CASES.entries()) {
      const d = makeData(c, 70 + n, dtype);
      const dOut = dtype === "f16" ? roundF16(randArray(d.q.length, 80 + n)) : randArray(d.q.length, 80 + n);
      const t = upload(gpu, c, d, dtype);
      const tdo = Tensor.from(gpu, dOut, [c.batch * c.seqQ, c.heads * c.headDim], dtype);
      const g = await attentionBackward(t.q, t.k, t.v, tdo, c);
      const bd = backwardBounds(d, dOut, c);
      for (const name of ["dq", "dk", "dv"] as const) {
        assert.equal(g[name].dtype, "f32");
        const got = await g[name].read();
        assertWithin(got, bd.ref[name], bd.eps, bd[name], `${c.name} ${dtype} ${name}`);
        g[name].dispose();
      }
      for (const x of [t.q, t.k, t.v, tdo]) x.dispose();
    }
  }
});

Deno.test("queries that see no key give zeros and finite gradients, never NaN", async () => {
  const gpu = await testGpu();
  // row 0 has no valid key at all; row 1's queries stand far beyond its keys, outside the window
  const c: AttentionOptions = {
    batch: 2,
    seqQ: 3,
    seqKv: 5,
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    kvLengths: [0, 5],
    queryOffset: [0, 100],
    window: 4,
  };
  const d = makeData(c, 90, "f32");
  const t = upload(gpu, c, d, "f32");
  const out = await (await attention(t.q, t.k, t.v, c)).read();
  assert.deepEqual(Array.from(out), new Array(out.length).fill(0));
  const dOut = Tensor.from(gpu, randArray(d.q.length, 91), [6, 16], "f32");
  const g = await attentionBackward(t.q, t.k, t.v, dOut, c);
  for (const x of [g.dq, g.dk, g.dv]) {
    const a = await x.read();
    assert.deepEqual(Array.from(a), new Array(a.length).fill(0));
  }
});

Deno.test("attention forward, backward and the KV cache work on row-chunked tensors", async () => {
  // q rows are 64 bytes (f32): chunks of 5 rows split batch rows of 7; k/v rows (32 bytes) chunk by 10
  const gpu = await testGpu({ maxBindingBytes: 320 });
  const c: AttentionRefOptions = {
    batch: 3,
    seqQ: 7,
    seqKv: 7,
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    kvLengths: [7, 4, 6],
  };
  const d = makeData(c, 100, "f32");
  const t = upload(gpu, c, d, "f32");
  assert.ok(t.q.chunks.length > 1 && t.k.chunks.length > 1);
  checkForward(await (await attention(t.q, t.k, t.v, c)).read(), c, d, "f32", "chunked forward");
  const dOut = randArray(d.q.length, 101);
  const g = await attentionBackward(t.q, t.k, t.v, Tensor.from(gpu, dOut, [21, 16], "f32"), c);
  const bd = backwardBounds(d, dOut, c);
  for (const name of ["dq", "dk", "dv"] as const) {
    assert.ok(g[name].chunks.length > 1);
    assertWithin(await g[name].read(), bd.ref[name], bd.eps, bd[name], `chunked ${name}`);
  }
  // a cache whose batch rows straddle chunks: append rows, read them back in place
  const cache = new KvCache(gpu, { layers: 1, batch: 3, maxLen: 7, kvHeads: 1, headDim: 8, dtype: "f32" });
  assert.ok(cache.k[0].chunks.length > 1);
  cache.append(0, t.k, t.v, 7);
  assert.deepEqual(Array.from(await cache.k[0].read()), Array.from(d.k));
  const one = Tensor.from(gpu, randArray(24, 102), [3, 8], "f32");
  cache.append(0, one, one, 1, [6, 3, 0]);
  const k2 = await cache.v[0].read();
  const want = Float32Array.from(d.v);
  const ov = await one.read();
  [6, 3, 0].forEach((p, b) => want.set(ov.subarray(b * 8, b * 8 + 8), (b * 7 + p) * 8));
  assert.deepEqual(Array.from(k2), Array.from(want));
  await gpu.destroy();
});

Deno.test("attention rejects inconsistent shapes and options with clear errors", async () => {
  const gpu = await testGpu();
  const q = Tensor.zeros(gpu, [10, 32], "f32");
  const k = Tensor.zeros(gpu, [10, 16], "f32");
  const base: AttentionOptions = { batch: 2, seqQ: 5, seqKv: 5, heads: 4, kvHeads: 2, headDim: 8 };
  const bad: [Partial<AttentionOptions>, RegExp][] = [
    [{ kvHeads: 3 }, /multiple of kvHeads/],
    [{ seqQ: 4 }, /q has shape/],
    [{ kvLengths: [5, 6] }, /kvLengths/],
    [{ kvLengths: [5] }, /kvLengths/],
    [{ window: 0 }, /window 0/],
    [{ seqQ: 0 }, /seqQ must be a positive integer/],
    [{ queryOffset: [-1, 0] }, /queryOffset/],
  ];
  for (const [o, re] of bad) {
    await assert.rejects(
      attention(q, k, k, { ...base, ...o }),
      (e: Error) => e instanceof GpuError && re.test(e.message),
    );
  }
  const big = Tensor.zeros(gpu, [2, 2 * 264], "f32");
  await assert.rejects(
    attention(big, big, big, { batch: 1, seqQ: 2, seqKv: 2, heads: 2, kvHeads: 2, headDim: 264 }),
    /headDim 264 exceeds the supported maximum 256/,
  );
  await assert.rejects(attentionBackward(q, k, k, k, base), /dOut has shape/);
  const cache = new KvCache(gpu, { layers: 1, batch: 2, maxLen: 4, kvHeads: 2, headDim: 8, dtype: "f32" });
  assert.throws(() => cache.append(0, k, k, 5), /exceed the capacity/);
  assert.throws(() => cache.append(1, k, k, 5), /layer 1 out of range/);
  cache.dispose();
});

Deno.test("every kernel design (tiled for GPUs, row and texel for CPU adapters) matches the reference", async () => {
  // `auto` picks one of them on this adapter; run each explicitly so that each stays covered everywhere,
  // with the same bounds as above (both use 8-key online-softmax tiles and f32 accumulation).
  const gpu = await testGpu();
  for (const kernel of ["tiled", "row", "texel"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      for (const [n, c] of FORWARD_CASES.entries()) {
        const d = makeData(c, 110 + n, dtype);
        const t = upload(gpu, c, d, dtype);
        const out = await attention(t.q, t.k, t.v, { ...c, kernel });
        checkForward(await out.read(), c, d, dtype, `${kernel} ${c.name} ${dtype}`);
        for (const x of [out, t.q, t.k, t.v]) x.dispose();
      }
      for (const [n, c] of BACKWARD_CASES.entries()) {
        const d = makeData(c, 130 + n, dtype);
        const dOut = roundF16(randArray(d.q.length, 150 + n));
        const t = upload(gpu, c, d, dtype);
        const tdo = Tensor.from(gpu, dOut, [c.batch * c.seqQ, c.heads * c.headDim], dtype);
        const g = await attentionBackward(t.q, t.k, t.v, tdo, { ...c, kernel });
        const bd = backwardBounds(d, dOut, c);
        for (const name of ["dq", "dk", "dv"] as const) {
          assertWithin(
            await g[name].read(),
            bd.ref[name],
            bd.eps,
            bd[name],
            `${kernel} ${c.name} ${dtype} ${name}`,
          );
          g[name].dispose();
        }
        for (const x of [t.q, t.k, t.v, tdo]) x.dispose();
      }
    }
    // queries that see no key: zeros, never NaN
    const c: AttentionOptions = {
      batch: 2,
      seqQ: 3,
      seqKv: 5,
      heads: 2,
      kvHeads: 1,
      headDim: 8,
      kvLengths: [0, 5],
      queryOffset: [0, 100],
      window: 4,
      kernel,
    };
    const d = makeData(c, 170, "f32");
    const t = upload(gpu, c, d, "f32");
    const out = await (await attention(t.q, t.k, t.v, c)).read();
    assert.ok(out.every((x) => x === 0), `${kernel}: unseeing queries`);
    const g = await attentionBackward(
      t.q,
      t.k,
      t.v,
      Tensor.from(gpu, randArray(d.q.length, 171), [6, 16], "f32"),
      c,
    );
    for (const x of [g.dq, g.dk, g.dv]) {
      assert.ok((await x.read()).every((v) => v === 0), `${kernel}: zero grads`);
    }
  }
  await assert.rejects(
    attention(
      Tensor.zeros(gpu, [2, 8], "f32"),
      Tensor.zeros(gpu, [2, 8], "f32"),
      Tensor.zeros(gpu, [2, 8], "f32"),
      {
        batch: 1,
        seqQ: 2,
        seqKv: 2,
        heads: 1,
        kvHeads: 1,
        headDim: 8,
        kernel: "fast" as "row",
      },
    ),
    /unknown kernel fast/,
  );
});

Deno.test("every kernel design works on row-chunked tensors", async () => {
  // as in the chunked test above: batch rows of q straddle chunks and are gathered (texel falls back to row)
  const gpu = await testGpu({ maxBindingBytes: 320 });
  const c: AttentionRefOptions = {
    batch: 3,
    seqQ: 7,
    seqKv: 7,
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    kvLengths: [7, 4, 6],
    window: 5,
  };
  const d = makeData(c, 180, "f32");
  const t = upload(gpu, c, d, "f32");
  assert.ok(t.q.chunks.length > 1 && t.k.chunks.length > 1);
  const dOut = randArray(d.q.length, 181);
  const tdo = Tensor.from(gpu, dOut, [21, 16], "f32");
  const bd = backwardBounds(d, dOut, c);
  for (const kernel of ["tiled", "row", "texel"] as const) {
    const out = await attention(t.q, t.k, t.v, { ...c, kernel });
    checkForward(await out.read(), c, d, "f32", `${kernel} chunked forward`);
    const g = await attentionBackward(t.q, t.k, t.v, tdo, { ...c, kernel });
    for (const name of ["dq", "dk", "dv"] as const) {
      assertWithin(await g[name].read(), bd.ref[name], bd.eps, bd[name], `${kernel} chunked ${name}`);
    }
  }
  await gpu.destroy();
});

// head_dim above 128 (GPT-J's 256) runs a second pipeline variant with half the rows per tile; 80, 96 and
// 160 are head sizes that fill neither variant's rows (nor the per-thread dims) evenly.
const WIDE_CASES: Case[] = [
  {
    name: "hd256 GQA 4/2 S19 padded",
    batch: 2,
    seqQ: 19,
    seqKv: 19,
    heads: 4,
    kvHeads: 2,
    headDim: 256,
    kvLengths: [19, 11],
  },
  {
    name: "hd256 offsets + window",
    batch: 2,
    seqQ: 6,
    seqKv: 21,
    heads: 2,
    kvHeads: 1,
    headDim: 256,
    kvLengths: [21, 15],
    queryOffset: [15, 9],
    window: 7,
  },
  {
    name: "hd160 window padded",
    batch: 2,
    seqQ: 20,
    seqKv: 20,
    heads: 2,
    kvHeads: 1,
    headDim: 160,
    kvLengths: [20, 13],
    window: 8,
  },
  { name: "hd96 MHA S17", batch: 1, seqQ: 17, seqKv: 17, heads: 2, kvHeads: 2, headDim: 96 },
  {
    name: "hd80 decode rows",
    batch: 2,
    seqQ: 3,
    seqKv: 13,
    heads: 4,
    kvHeads: 2,
    headDim: 80,
    kvLengths: [13, 9],
    queryOffset: [10, 6],
  },
];

Deno.test("head_dim 80, 96, 160, 256: forward and backward of both designs match the reference (f32, f16)", async () => {
  const gpu = await testGpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const [n, c] of WIDE_CASES.entries()) {
      const d = makeData(c, 200 + n, dtype);
      const dOut = roundF16(randArray(d.q.length, 220 + n));
      const bd = backwardBounds(d, dOut, c);
      for (const kernel of ["tiled", "row"] as const) {
        const t = upload(gpu, c, d, dtype);
        const out = await attention(t.q, t.k, t.v, { ...c, kernel });
        checkForward(await out.read(), c, d, dtype, `${kernel} ${c.name} ${dtype}`);
        const tdo = Tensor.from(gpu, dOut, [c.batch * c.seqQ, c.heads * c.headDim], dtype);
        const g = await attentionBackward(t.q, t.k, t.v, tdo, { ...c, kernel });
        for (const name of ["dq", "dk", "dv"] as const) {
          const got = await g[name].read();
          assertWithin(got, bd.ref[name], bd.eps, bd[name], `${kernel} ${c.name} ${dtype} ${name}`);
          assert.ok(got.some((x) => Math.abs(x) > 1e-3), `${kernel} ${c.name} ${name} is trivially zero`);
          g[name].dispose();
        }
        for (const x of [out, t.q, t.k, t.v, tdo]) x.dispose();
      }
    }
  }
});

Deno.test("head_dim 256: the GPU backward of both designs equals central finite differences", async () => {
  const gpu = await testGpu();
  const c: AttentionRefOptions = {
    batch: 2,
    seqQ: 5,
    seqKv: 5,
    heads: 2,
    kvHeads: 1,
    headDim: 256,
    kvLengths: [5, 3],
    window: 4,
  };
  // moderate inputs so that L is smooth on the step h: q, k, v uniform in [-1, 1)
  const d: Data = {
    q: randArray(c.batch * c.seqQ * c.heads * c.headDim, 240),
    k: randArray(c.batch * c.seqKv * c.kvHeads * c.headDim, 241),
    v: randArray(c.batch * c.seqKv * c.kvHeads * c.headDim, 242),
  };
  const dOut = randArray(d.q.length, 243);
  const t = upload(gpu, c, d, "f32");
  const tdo = Tensor.from(gpu, dOut, [c.batch * c.seqQ, c.heads * c.headDim], "f32");
  for (const kernel of ["tiled", "row"] as const) {
    const g = await attentionBackward(t.q, t.k, t.v, tdo, { ...c, kernel });
    const grads = { q: await g.dq.read(), k: await g.dk.read(), v: await g.dv.read() };
    // h = 1e-3 on the f64 forward: truncation h²/6 times the third derivative (≲ 1 here) ~ 2e-7, rounding
    // ~1e-13; the GPU's f32 gradients add ≲ 1e-5 (their γ bound for these sizes). 5e-5 absolute leaves
    // margin and is far below a structural error (a wrong dim or key moves an entry by ~1e-2 or more).
    const h = 1e-3;
    for (const name of ["q", "k", "v"] as const) {
      const x = d[name], grad = grads[name];
      let checked = 0, nonzero = 0;
      for (let i = 0; i < x.length; i += 7) {
        const at = (delta: number) => {
          const y = Float64Array.from(x);
          y[i] += delta;
          return loss(name === "q" ? y : d.q, name === "k" ? y : d.k, name === "v" ? y : d.v, dOut, c);
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        if (!(Math.abs(grad[i] - fd) <= 5e-5)) {
          throw new Error(`${kernel} d${name}[${i}]: GPU ${grad[i]}, finite differences ${fd}`);
        }
        checked++;
        if (Math.abs(fd) > 1e-2) nonzero++;
      }
      assert.ok(
        nonzero > checked / 4,
        `${kernel} d${name}: too few non-zero gradients (${nonzero}/${checked})`,
      );
    }
    for (const x of [g.dq, g.dk, g.dv]) x.dispose();
  }
  for (const x of [t.q, t.k, t.v, tdo]) x.dispose();
});

Deno.test("small heads on the 256-wide variant (the bench's comparison) match the reference; bad tiles are refused", async () => {
  const gpu = await testGpu();
  const tiles = attentionTiles(256);
  for (const c of [FORWARD_CASES[0], BACKWARD_CASES[2], BACKWARD_CASES[0]]) {
    const d = makeData(c, 260, "f32");
    const dOut = randArray(d.q.length, 261);
    const bd = backwardBounds(d, dOut, c);
    for (const kernel of ["tiled", "row"] as const) {
      const t = upload(gpu, c, d, "f32");
      const out = await attention(t.q, t.k, t.v, { ...c, kernel, tiles });
      checkForward(await out.read(), c, d, "f32", `${kernel} ${c.name} on the 256 variant`);
      const tdo = Tensor.from(gpu, dOut, [c.batch * c.seqQ, c.heads * c.headDim], "f32");
      const g = await attentionBackward(t.q, t.k, t.v, tdo, { ...c, kernel, tiles });
      for (const name of ["dq", "dk", "dv"] as const) {
        assertWithin(await g[name].read(), bd.ref[name], bd.eps, bd[name], `${kernel} ${c.name} 256 ${name}`);
        g[name].dispose();
      }
      for (const x of [out, t.q, t.k, t.v, tdo]) x.dispose();
    }
  }
  assert.deepEqual(attentionTiles(128), { HDM: 128, FQ: 16, FK: 8, BT: 8 });
  assert.deepEqual(attentionTiles(129), tiles);
  const x = Tensor.zeros(gpu, [2, 2 * 160], "f32");
  const o = { batch: 1, seqQ: 2, seqKv: 2, heads: 2, kvHeads: 2, headDim: 160 };
  await assert.rejects(
    attention(x, x, x, { ...o, tiles: attentionTiles(128) }),
    /not a variant for headDim 160/,
  );
  await assert.rejects(attention(x, x, x, { ...o, tiles: { ...tiles, FQ: 4 } }), /not a variant/);
  x.dispose();
});

Deno.test("texel forward: packs k and v and runs attn_fwd_texel; bit-identical to the row forward", async () => {
  // same arithmetic in the same order as the row kernel, only the k/v reads differ
  const gpu = await testGpu();
  // (head_dim 256: the wide variant's private rows)
  for (const [headDim, dtype] of [[32, "f32"], [32, "f16"], [256, "f32"]] as const) {
    const c: AttentionRefOptions = {
      batch: 3,
      seqQ: 19,
      seqKv: 19,
      heads: 4,
      kvHeads: 2,
      headDim,
      kvLengths: [19, 11, 0],
    };
    const d = makeData(c, 190, dtype);
    const t = upload(gpu, c, d, dtype);
    const before = gpu.counters().dispatches;
    const texel = await attention(t.q, t.k, t.v, { ...c, kernel: "texel" });
    // f32 k and v rows (stride a multiple of 256 bytes) are copied into their textures; f16 ones packed
    assert.equal(
      gpu.counters().dispatches - before,
      dtype === "f32" ? 1 : 3,
      dtype === "f32" ? "attn_fwd_texel after two texture copies" : "pack k, pack v, attn_fwd_texel",
    );
    const row = await attention(t.q, t.k, t.v, { ...c, kernel: "row" });
    const a = await texel.read();
    checkForward(a, c, d, dtype, `texel ${dtype} hd${headDim}`);
    // (the 256 variant's row kernel splits its dims differently: equal to the reference, not bit for bit)
    if (headDim <= 128) {
      assert.deepEqual(Array.from(a), Array.from(await row.read()), `texel vs row ${dtype} hd${headDim}`);
    }
    for (const x of [texel, row, t.q, t.k, t.v]) x.dispose();
  }
  // head_dim not a multiple of 4: the row kernel (one dispatch)
  const odd: AttentionRefOptions = { batch: 1, seqQ: 5, seqKv: 5, heads: 2, kvHeads: 2, headDim: 6 };
  const d = makeData(odd, 195, "f32");
  const t = upload(gpu, odd, d, "f32");
  const before = gpu.counters().dispatches;
  const out = await attention(t.q, t.k, t.v, { ...odd, kernel: "texel" });
  assert.equal(gpu.counters().dispatches - before, 1, "head_dim 6 falls back to the row kernel");
  checkForward(await out.read(), odd, d, "f32", "texel fallback hd6");
  for (const x of [out, t.q, t.k, t.v]) x.dispose();
});
