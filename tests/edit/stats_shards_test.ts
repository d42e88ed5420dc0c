/**
 * Sharded covariance statistics: shards of a run merge into the same cached C a single run writes (within
 * f32 summation-order error), and every kind of bad merge is an error that writes nothing.
 * @module
 */
import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { collectStats } from "../../lib/edit/covariance.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import {
  collectStatsShard,
  mergeStatsShards,
  shardFileName,
  shardRange,
} from "../../lib/edit/stats_shards.ts";
import { sharedPath } from "../_util.ts";

Deno.test("shardRange: whole batches, tiles the corpus, clear errors", () => {
  assert.deepEqual(shardRange(24, 8, { index: 0, count: 2 }), [0, 8]);
  assert.deepEqual(shardRange(24, 8, { index: 1, count: 2 }), [8, 24]);
  assert.deepEqual(shardRange(20, 8, { index: 2, count: 3 }), [16, 20]);
  for (const n of [1, 2, 3, 5, 7]) {
    let at = 0;
    for (let i = 0; i < n; i++) {
      const [a, b] = shardRange(50, 7, { index: i, count: n });
      assert.equal(a, at);
      assert.equal(a % 7, 0);
      at = b;
    }
    assert.equal(at, 50);
  }
  assert.throws(() => shardRange(24, 8, { index: 2, count: 2 }), /out of range for 2 shards/);
  assert.throws(() => shardRange(24, 8, { index: 0, count: 0 }), /shard count/);
  assert.throws(() => shardRange(16, 8, { index: 0, count: 3 }), /would be empty.*at most 2 shards/);
});

Deno.test("stats shards merge into the single run's cached C; bad merges write nothing", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  const corpus = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
  if (!dir || !corpus) return;
  const model = await loadModel(dir, { quiet: true });
  const tmp = await Deno.makeTempDir();
  try {
    const opts = { layer: 0, corpus: [corpus], nSamples: 24, batchSize: 8, maxLength: 32 };
    const single = await collectStats(model, { ...opts, dir: `${tmp}/single` });
    const cSingle = await single.c.read();
    single.c.dispose();

    const s0 = await collectStatsShard(model, opts, { index: 0, count: 2 }, `${tmp}/shards`);
    const s1 = await collectStatsShard(model, opts, { index: 1, count: 2 }, `${tmp}/shards`);
    assert.deepEqual(s0.range, [0, 8]);
    assert.deepEqual(s1.range, [8, 24]);
    assert.equal(s0.count + s1.count, single.count);
    assert.ok(s0.path.endsWith(shardFileName(0, s0.key, { index: 0, count: 2 })));

    const merged = await mergeStatsShards([s1.path, s0.path], `${tmp}/merged`);
    assert.equal(merged.count, single.count);
    // the same cache file name (key) a single run writes, so collectStats finds it
    assert.equal(merged.path.split("/").pop(), single.path.split("/").pop());
    const found = await collectStats(model, { ...opts, dir: `${tmp}/merged` });
    assert.equal(found.source, "cache");
    assert.equal(found.count, single.count);
    const cMerged = await found.c.read();
    found.c.dispose();
    let maxAbs = 0, worst = 0;
    for (let i = 0; i < cSingle.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(cSingle[i]));
      worst = Math.max(worst, Math.abs(cMerged[i] - cSingle[i]));
    }
    // f32 sums of ≤ 768 rows in another order: a few ulps of the largest entry
    assert.ok(
      worst <= 1e-5 * maxAbs,
      `merged C differs from the single run's by ${worst} (max |C| ${maxAbs})`,
    );
    assert.ok(worst > 0 || cMerged.every((v, i) => v === cSingle[i]));
    // the metadata equals the single run's
    const fa = await openSafetensors(single.path), fb = await openSafetensors(merged.path);
    assert.deepEqual(fb.metadata, fa.metadata);
    await fa.close(), await fb.close();

    // bad merges: nothing is written
    const bad = `${tmp}/bad`;
    await assert.rejects(() => mergeStatsShards([s0.path], bad), /missing shard\(s\) 1\/2/);
    await assert.rejects(() => mergeStatsShards([s0.path, s0.path, s1.path], bad), /shard 0\/2 given twice/);
    const other = await collectStatsShard(
      model,
      { ...opts, nSamples: 16 },
      { index: 1, count: 2 },
      `${tmp}/o`,
    );
    await assert.rejects(
      () => mergeStatsShards([s0.path, other.path], bad),
      /belongs to another statistics run .*n_samples "16" vs "24"/,
    );
    const three = await collectStatsShard(model, opts, { index: 2, count: 3 }, `${tmp}/o`);
    await assert.rejects(() => mergeStatsShards([s0.path, three.path], bad), /is shard 2\/3 of 24 sequences/);
    await assert.rejects(() => mergeStatsShards([single.path], bad), /not a keg statistics shard/);
    await assert.rejects(
      () => collectStatsShard(model, opts, { index: 2, count: 2 }, `${tmp}/o`),
      /index 2 is out of range for 2 shards/,
    );
    await assert.rejects(() => Deno.stat(bad), Deno.errors.NotFound);
  } finally {
    await model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});
