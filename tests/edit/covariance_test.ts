import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import {
  cleanWikitextLine,
  collectStats,
  exportStatsNpz,
  loadStatsFile,
  readCorpus,
} from "../../lib/edit/covariance.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { assertClose, sharedPath } from "../_util.ts";

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
