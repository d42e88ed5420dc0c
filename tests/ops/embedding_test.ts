import assert from "node:assert/strict";
import { GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { addToRows, embedding, gatherRows, scatterAddRows, sumRows } from "../../lib/ops/embedding.ts";
import { embeddingRef } from "../../lib/testing/transformer_reference.ts";
import { assertClose, randArray, rng, roundF16, testGpu } from "../_util.ts";

const U32 = 2 ** -24; // unit roundoff of f32

function randIds(n: number, limit: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * limit));
}

const round = (dtype: "f32" | "f16", v: Float32Array | Float64Array): Float32Array =>
  dtype === "f16" ? roundF16(v) : Float32Array.from(v);

Deno.test("embedding gathers rows exactly (f32/f16 tables and outputs, odd d, repeated ids)", async () => {
  const gpu = await testGpu();
  const V = 37;
  for (const d of [1, 3, 65, 257]) {
    for (const tdt of ["f32", "f16"] as const) {
      const table = round(tdt, randArray(V * d, d));
      const tt = Tensor.from(gpu, table, [V, d], tdt);
      const ids = randIds(11, V, d);
      ids[3] = ids[7]; // a repeated id
      ids[0] = V - 1; // the last row
      const y = await embedding(tt, ids);
      assert.equal(y.dtype, tdt);
      assert.deepEqual(y.shape, [11, d]);
      // a gather is a copy: bit-exact
      assertClose(await y.read(), embeddingRef(table, d, ids), 0, 0, `embedding ${tdt} d=${d}`);
      // outDtype: f32 → f16 rounds once; f16 → f32 is exact
      const odt = tdt === "f32" ? "f16" : "f32";
      const y2 = await embedding(tt, ids, { outDtype: odt });
      assertClose(await y2.read(), round(odt, embeddingRef(table, d, ids)), 0, 0, `embedding →${odt}`);
      for (const t of [tt, y, y2]) t.dispose();
    }
  }
});

Deno.test("embedding on a row-chunked table, accumulate (wte + wpe), gatherRows", async () => {
  const V = 50, d = 65, T = 23;
  // binding cap of 4 f32 rows: the f32 table has 13 chunks, the f16 table 7 (8 rows each)
  const gpu = await testGpu({ maxBindingBytes: 4 * d * 4 });
  for (const tdt of ["f32", "f16"] as const) {
    const wte = round(tdt, randArray(V * d, 1)), wpe = round(tdt, randArray(16 * d, 2));
    const twte = Tensor.from(gpu, wte, [V, d], tdt), twpe = Tensor.from(gpu, wpe, [16, d], tdt);
    assert.equal(twte.chunks.length, tdt === "f32" ? 13 : 7);
    const ids = randIds(T, V, 3);
    const pos = Uint32Array.from({ length: T }, (_, t) => t % 16);
    const h = await embedding(twte, ids, { outDtype: "f32" });
    assert.ok(h.chunks.length > 1, "the output is chunked too");
    assertClose(await h.read(), embeddingRef(wte, d, ids), 0, 0, `chunked embedding ${tdt}`);
    const same = await embedding(twpe, pos, { accumulate: h });
    assert.equal(same, h);
    // h = wte[ids] + wpe[pos]: one f32 addition of two exact values, correctly rounded (WGSL f32 +)
    const a = embeddingRef(wte, d, ids), b = embeddingRef(wpe, d, pos);
    const want = Float32Array.from(a, (v, i) => Math.fround(v + b[i]));
    assertClose(await h.read(), want, 0, 0, `wte + wpe ${tdt}`);
    // the same into an f16 activation: wte[ids] stored as f16, then the f32 sum rounded to f16
    const h16 = await embedding(twte, ids, { outDtype: "f16" });
    await embedding(twpe, pos, { accumulate: h16 });
    const a16 = roundF16(a);
    const want16 = roundF16(Float32Array.from(a16, (v, i) => Math.fround(v + b[i])));
    assertClose(await h16.read(), want16, 0, 0, `wte + wpe → f16 (${tdt})`);
    // gatherRows: f32 by default, exact
    const rows = Uint32Array.from([22, 0, 5, 5, 17]);
    const g = await gatherRows(h, rows);
    assert.equal(g.dtype, "f32");
    assertClose(await g.read(), embeddingRef(want, d, rows), 0, 0, "gatherRows");
  }
  await gpu.destroy();
});

Deno.test("addToRows and sumRows on chunked f32/f16 activations, repeated rows", async () => {
  const N = 23, d = 65;
  const gpu = await testGpu({ maxBindingBytes: 4 * d * 4 });
  for (const xdt of ["f32", "f16"] as const) {
    const x = round(xdt, randArray(N * d, 10, 3));
    const v = randArray(d, 11, 0.5);
    const tx = Tensor.from(gpu, x, [N, d], xdt), tv = Tensor.from(gpu, v, [d], "f32");
    assert.ok(tx.chunks.length > 1);
    const rows = Uint32Array.from([21, 3, 7, 3, 0, 22, 3]);
    await addToRows(tx, tv, rows);
    const want = Float64Array.from(x);
    for (const r of rows) for (let j = 0; j < d; j++) want[r * d + j] += v[j];
    // k·v then one add (possibly fused), rounded to x's dtype: ≤ 2 f32 roundings of |x| + k|v| ≤ 4.5,
    // plus for f16 one rounding of the result (≤ 2^-11·|x'|)
    const f16 = xdt === "f16";
    assertClose(await tx.read(), want, 2 * U32 * 4.5, f16 ? 2 ** -11 : 0, `addToRows ${xdt}`);
    // untouched rows stay bit-identical
    const after = await tx.read();
    assert.deepEqual(after.subarray(d, 2 * d), x.subarray(d, 2 * d));

    // sumRows: n = 7 terms added in sequence in f32: error ≤ 7·u·Σ|terms| ≤ 7·u·7·4.5
    const tx2 = Tensor.from(gpu, x, [N, d], xdt);
    const s = await sumRows(tx2, rows);
    assert.deepEqual(s.shape, [d]);
    assert.equal(s.dtype, "f32");
    const sw = new Float64Array(d);
    for (const r of rows) for (let j = 0; j < d; j++) sw[j] += x[r * d + j];
    assertClose(await s.read(), sw, 7 * 7 * 4.5 * U32, 0, `sumRows ${xdt}`);
  }
  // an empty row list gives zeros / changes nothing
  const t = Tensor.from(gpu, randArray(4 * d, 12), [4, d], "f32");
  assertClose(await (await sumRows(t, new Uint32Array(0))).read(), new Float32Array(d), 0, 0, "empty");
  await gpu.destroy();
});

Deno.test("sumRows is the gradient of addToRows (central difference of L(v) = ⟨dy, x + Σ_r e_r·v⟩)", async () => {
  const gpu = await testGpu();
  const N = 9, d = 65, h = 0.5;
  const x = randArray(N * d, 40), dy = randArray(N * d, 41), v = randArray(d, 42), u = randArray(d, 43);
  const rows = Uint32Array.from([4, 1, 4, 8]);
  const L = async (s: number) => {
    const tx = Tensor.from(gpu, x, [N, d], "f32");
    await addToRows(tx, Tensor.from(gpu, v.map((a, j) => a + s * h * u[j]), [d], "f32"), rows);
    const y = await tx.read();
    let acc = 0;
    for (let i = 0; i < y.length; i++) acc += dy[i] * y[i];
    return acc;
  };
  // L is linear in v, so the central difference has no truncation error; the f32 roundings of the
  // ≈ 4·d updated entries (≤ 2u·4.5 each, times |dy| ≤ 1) and of v ± h·u (≤ u·1.5 each) over 2h bound it.
  const fd = (await L(1) - await L(-1)) / (2 * h);
  const g = await (await sumRows(Tensor.from(gpu, dy, [N, d], "f32"), rows)).read();
  let gu = 0;
  for (let j = 0; j < d; j++) gu += g[j] * u[j];
  assertClose([gu], [fd], (4 * d * (9 + 1.5 * 4) * U32) / h, 0, "⟨sumRows(dy), u⟩ vs FD");
});

Deno.test("embedding ops reject out-of-range ids and wrong shapes with a GpuError", async () => {
  const gpu = await testGpu();
  const table = Tensor.zeros(gpu, [5, 3], "f32");
  await assert.rejects(() => embedding(table, Uint32Array.from([0, 5])), GpuError);
  await assert.rejects(() => gatherRows(table, Uint32Array.from([9])), GpuError);
  await assert.rejects(
    () => embedding(table, Uint32Array.from([0]), { accumulate: Tensor.zeros(gpu, [2, 3], "f32") }),
    GpuError,
  );
  await assert.rejects(
    () => addToRows(table, Tensor.zeros(gpu, [4], "f32"), Uint32Array.from([0])),
    GpuError,
  );
  await assert.rejects(() => sumRows(Tensor.zeros(gpu, [5], "f32"), Uint32Array.from([0])), GpuError);
});

Deno.test("scatterAddRows is the transpose of gatherRows (chunked, f32 and f16)", async () => {
  for (const dtype of ["f32", "f16"] as const) {
    const gpu = await testGpu({ maxBindingBytes: 7 * 5 * 4 });
    const N = 23, d = 5;
    const base = randArray(N * d, 11), src = randArray(4 * d, 12);
    const rows = Uint32Array.of(22, 0, 9, 15);
    const dst = Tensor.from(gpu, base, [N, d], dtype);
    assert.ok(dst.chunks.length > 1);
    await scatterAddRows(dst, Tensor.from(gpu, src, [4, d], "f32"), rows);
    const want = (dtype === "f16" ? roundF16(base) : base).slice();
    rows.forEach((r, i) => {
      for (let j = 0; j < d; j++) want[r * d + j] += src[i * d + j];
    });
    // one rounding of the sum (|values| ≤ 2) to the storage type
    assertClose(await dst.read(), want, dtype === "f16" ? 2 * 2 ** -11 : 2 * 2 ** -24, 0, `scatter ${dtype}`);
    const g = await gatherRows(dst, rows);
    assertClose(
      await g.read(),
      rows.reduce((acc: number[], r) => acc.concat(Array.from(want.slice(r * d, r * d + d))), []),
      dtype === "f16" ? 2 * 2 ** -11 : 2 * 2 ** -24,
      0,
      "gather back",
    );
    await assert.rejects(
      () => scatterAddRows(dst, Tensor.from(gpu, src, [4, d], "f32"), Uint32Array.of(1, 1, 2, 3)),
      /distinct/,
    );
    await gpu.destroy();
  }
});
