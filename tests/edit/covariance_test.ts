import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import {
  accumulateKeys,
  cleanWikitextLine,
  collectStats,
  exportStatsNpz,
  lengthGroups,
  loadStatsFile,
  readCorpus,
} from "../../lib/edit/covariance.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { assertClose, sharedPath } from "../_util.ts";
import { Tensor } from "../../lib/gpu/tensor.ts";

Deno.test("WikiText clean-up follows the ROME recipe", () => {
  assert.equal(
    cleanWikitextLine(
      " The 2 @,@ 000 @-@ year @-@ old city ( founded in 1 @.@ 5 ) , is <unk> old ; yes : no . ",
    ),
    "The 2,000-year-old city (founded in 1.5 ), is  old; yes: no .",
  );
  assert.equal(cleanWikitextLine(" = = Heading = = "), null);
  assert.equal(cleanWikitextLine("short line"), null);
});

Deno.test("covariance statistics: equal a host XᵀX, resume after an interruption to the same C, cache", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  const corpus = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
  if (!dir || !corpus) return;
  const model = await loadModel(dir, { quiet: true });
  const cache = await Deno.makeTempDir();
  try {
    const opts = { layer: 0, corpus: [corpus], nSamples: 24, batchSize: 8, maxLength: 32, dir: cache };
    // host reference: keys of the same sequences, XᵀX / n in f64
    const tok = model.tokenizer!;
    const seqs = (await readCorpus([corpus], 24)).map((s) => tok.encode(s).slice(0, 32));
    const d = model.config.intermediateSize;
    const ref = new Float64Array(d * d);
    let count = 0;
    for (let i = 0; i < seqs.length; i += 8) {
      const b = padBatch(seqs.slice(i, i + 8));
      const rows: number[] = [];
      b.lengths.forEach((n, r) => {
        for (let p = 0; p < n; p++) rows.push(r * b.seq + p);
      });
      const res = await model.net.forward(b, {
        logitRows: Uint32Array.of(0),
        hooks: { layer: 0, readRows: Uint32Array.from(rows) },
      });
      res.logits.dispose();
      const k = res.keys!;
      for (let r = 0; r < rows.length; r++) {
        for (let a = 0; a < d; a++) {
          const ka = k[r * d + a];
          if (ka === 0) continue;
          for (let c = 0; c < d; c++) ref[a * d + c] += ka * k[r * d + c];
        }
      }
      count += rows.length;
    }
    for (let i = 0; i < ref.length; i++) ref[i] /= count;

    // interrupted after the first batch (a partial state is saved), then resumed
    const ac = new AbortController();
    await assert.rejects(
      () => collectStats(model, { ...opts, signal: ac.signal, onProgress: () => ac.abort() }),
      /interrupted at 8\/24/,
    );
    const resumed = await collectStats(model, opts);
    assert.equal(resumed.source, "computed");
    assert.equal(resumed.count, count);
    const cResumed = await resumed.c.read();
    // f32 accumulation over ≤ 24·32 rows of keys: relative error ~ n·2^-24 of the largest entry
    let maxRef = 0;
    for (const v of ref) maxRef = Math.max(maxRef, Math.abs(v));
    assertClose(cResumed, ref, 1e-4 * maxRef, 0, "C vs host XᵀX/n");
    // an uninterrupted run (forced) gives the very same C
    const fresh = await collectStats(model, { ...opts, force: true });
    assert.deepEqual(Array.from(await fresh.c.read()), Array.from(cResumed));
    // a second call hits the cache
    const cached = await collectStats(model, opts);
    assert.equal(cached.source, "cache");
    assert.equal(cached.count, count);
    // the reference code's npz layout round-trips
    const npz = `${cache}/stats.npz`;
    await exportStatsNpz(cached, npz);
    const back = await loadStatsFile(model, 0, npz);
    assert.equal(back.count, count);
    assert.deepEqual(Array.from(await back.c.read()), Array.from(cResumed));
    // another sample count is another cache entry (keys include it)
    const other = await collectStats(model, { ...opts, nSamples: 16 });
    assert.equal(other.source, "computed");
  } finally {
    await model.dispose();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("lengthGroups: every sequence once, sorted groups, and the least padded cost (brute force)", () => {
  const cost = (lengths: number[], groups: number[][], overhead: number) =>
    groups.reduce((a, g) => a + overhead + g.length * Math.max(...g.map((i) => lengths[i])), 0);
  assert.deepEqual(lengthGroups([128, 128, 128]), [[0, 1, 2]]);
  assert.deepEqual(lengthGroups([128, 10, 128, 12], 4), [[1, 3], [0, 2]]);
  assert.deepEqual(lengthGroups([128, 10, 128, 12], 1000), [[1, 3, 0, 2]]);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let trial = 0; trial < 40; trial++) {
    const n = 1 + Math.floor(rand() * 9);
    const lengths = Array.from({ length: n }, () => 1 + Math.floor(rand() * 128));
    const overhead = Math.floor(rand() * 300);
    const groups = lengthGroups(lengths, overhead);
    assert.deepEqual(groups.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
    const flat = groups.flat();
    for (let i = 1; i < flat.length; i++) assert.ok(lengths[flat[i - 1]] <= lengths[flat[i]]);
    // brute force over every cut of the sorted order
    const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
    let best = Infinity;
    for (let mask = 0; mask < 1 << (n - 1); mask++) {
      const gs: number[][] = [[order[0]]];
      for (let i = 1; i < n; i++) {
        (mask >> (i - 1)) & 1 ? gs.push([order[i]]) : gs[gs.length - 1].push(order[i]);
      }
      best = Math.min(best, cost(lengths, gs, overhead));
    }
    assert.equal(cost(lengths, groups, overhead), best, `lengths ${lengths}, overhead ${overhead}`);
  }
});

Deno.test("covariance statistics: length groups and key-only forwards equal the padded full-block path", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  const corpus = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
  if (!dir || !corpus) return;
  const model = await loadModel(dir, { quiet: true });
  const cache = await Deno.makeTempDir();
  try {
    // a batch of 16 WikiText lines mixes full (128-token) and short sequences, so it splits into groups
    const opts = {
      layer: 1,
      corpus: [corpus],
      nSamples: 32,
      batchSize: 16,
      maxLength: 64,
      dir: cache,
      force: true,
    };
    const tok = model.tokenizer!;
    const lengths = (await readCorpus([corpus], 16)).map((s) => Math.min(128, tok.encode(s).length));
    assert.ok(lengthGroups(lengths).length > 1, `the first batch must split (lengths ${lengths})`);
    const fast = await collectStats(model, opts);
    const slow = await collectStats(model, { ...opts, paddedFullForward: true });
    assert.equal(fast.count, slow.count);
    const a = await fast.c.read(), b = await slow.c.read();
    let max = 0;
    for (const v of b) max = Math.max(max, Math.abs(v));
    // the same f32 products summed in another order: ~ n·2^-24 of the largest entry
    assertClose(a, b, 1e-5 * max, 0, "grouped vs padded C");
    fast.c.dispose(), slow.c.dispose();
    // row-chunked tensors (1 MiB bindings: a batch's keys span several chunks): each sub-batch gathers its
    // rows and updates C on its own, to the same C
    const chunked = await loadModel(dir, { quiet: true, maxBindingBytes: 1 << 20 });
    try {
      const probe = Tensor.empty(chunked.net.deviceOf(0), [400, model.config.intermediateSize], "f32");
      assert.ok(probe.chunks.length > 1, "400 keys must span chunks");
      probe.dispose();
      const s = await collectStats(chunked, { ...opts, dir: `${cache}/chunked` });
      assert.equal(s.count, slow.count);
      assertClose(await s.c.read(), b, 1e-5 * max, 0, "row-chunked grouped vs padded C");
      s.c.dispose();
    } finally {
      await chunked.dispose();
    }
  } finally {
    await model.dispose();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("covariance statistics: a row-chunked sub-batch key is gathered before it joins the batch's keys", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const d = 1024;
  // 200-row bindings: the batch's 188 real keys fit one chunk, the sub-batch's padded 2·128 rows do not
  const model = await loadModel(dir, { quiet: true, maxBindingBytes: 200 * d * 4 });
  const tmp = await Deno.makeTempDir();
  try {
    assert.equal(model.config.intermediateSize, d);
    const tok = model.tokenizer!;
    const seqs = [
      "The river runs to the sea and".repeat(30),
      "A short line of text about a river.".repeat(6),
    ];
    const lengths = seqs.map((s) => Math.min(128, tok.encode(s).length));
    assert.equal(lengths[0], 128);
    const real = lengths[0] + lengths[1];
    assert.ok(lengthGroups(lengths).length === 1, `lengths ${lengths}`);
    const gpu = model.net.deviceOf(0);
    for (const [rows, chunks] of [[real, 1], [256, 2]]) {
      const t = Tensor.empty(gpu, [rows, d], "f32");
      assert.equal(t.chunks.length, chunks, `${rows} keys in ${chunks} chunk(s)`);
      t.dispose();
    }
    const o = { layer: 0, corpus: [], nSamples: 2, batchSize: 2 };
    const run = (padded: boolean) =>
      accumulateKeys(model, { ...o, paddedFullForward: padded }, seqs, [0, 2], `${tmp}/p${padded}`, "k", 128);
    const fast = await run(false), slow = await run(true);
    assert.equal(fast.count, real);
    assert.equal(slow.count, real);
    const a = await fast.sum.read(), b = await slow.sum.read();
    let max = 0;
    for (const v of b) max = Math.max(max, Math.abs(v));
    assertClose(a, b, 1e-5 * max, 0, "gathered chunked key vs padded path");
    fast.sum.dispose(), slow.sum.dispose();
  } finally {
    await model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});
