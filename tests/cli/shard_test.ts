/**
 * `--shard`: explicit i/n, SLURM job arrays and Kubernetes Indexed Jobs, and the errors when they disagree;
 * `keg stats merge` on hand-made shard files (exact sums, clear refusals).
 * @module
 */
import assert from "node:assert/strict";
import { parseShardFlag, type ShardEnv } from "../../lib/cli/shard.ts";
import { UsageError } from "../../lib/cli/args.ts";
import { statsCommand } from "../../lib/cli/stats.ts";
import { openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";

const env = (vars: Record<string, string>): ShardEnv => (name) => vars[name];
const none = env({});

Deno.test("--shard i/n outside a scheduler", () => {
  assert.deepEqual(parseShardFlag("eval", "1/4", none), { index: 1, count: 4 });
  assert.deepEqual(parseShardFlag("eval", " 0/1 ", none), { index: 0, count: 1 });
  assert.throws(() => parseShardFlag("eval", "4/4", none), /shard index 4 is out of range/);
  assert.throws(() => parseShardFlag("eval", "0/0", none), /out of range/);
  assert.throws(() => parseShardFlag("eval", "1-4", none), /expects i\/n/);
  assert.throws(() => parseShardFlag("stats", "auto", none), /stats: --shard auto: not inside a SLURM array/);
  assert.throws(() => parseShardFlag("eval", "x", none), UsageError);
});

Deno.test("--shard auto in a SLURM array: 0-based and 1-based arrays, disagreements", () => {
  const a = {
    SLURM_ARRAY_TASK_ID: "3",
    SLURM_ARRAY_TASK_COUNT: "4",
    SLURM_ARRAY_TASK_MIN: "0",
    SLURM_ARRAY_TASK_MAX: "3",
  };
  assert.deepEqual(parseShardFlag("eval", "auto", env(a)), { index: 3, count: 4 });
  assert.deepEqual(parseShardFlag("eval", "auto/4", env(a)), { index: 3, count: 4 });
  assert.deepEqual(parseShardFlag("eval", "3/4", env(a)), { index: 3, count: 4 });
  const one = {
    SLURM_ARRAY_TASK_ID: "1",
    SLURM_ARRAY_TASK_COUNT: "2",
    SLURM_ARRAY_TASK_MIN: "1",
    SLURM_ARRAY_TASK_MAX: "2",
  };
  assert.deepEqual(parseShardFlag("eval", "auto", env(one)), { index: 0, count: 2 });
  assert.throws(
    () => parseShardFlag("eval", "1/4", env(a)),
    /disagrees with this SLURM array task, which is shard 3\/4/,
  );
  assert.throws(() => parseShardFlag("eval", "3/5", env(a)), /disagrees/);
  assert.throws(
    () => parseShardFlag("eval", "auto/8", env(a)),
    /auto\/8 disagrees with the SLURM array, which has 4 tasks/,
  );
  const stepped = {
    SLURM_ARRAY_TASK_ID: "2",
    SLURM_ARRAY_TASK_COUNT: "3",
    SLURM_ARRAY_TASK_MIN: "0",
    SLURM_ARRAY_TASK_MAX: "4",
  };
  assert.throws(() => parseShardFlag("eval", "auto", env(stepped)), /contiguous SLURM array/);
  assert.throws(
    () => parseShardFlag("eval", "auto", env({ SLURM_ARRAY_TASK_ID: "0" })),
    /SLURM_ARRAY_TASK_COUNT is not/,
  );
  assert.throws(
    () => parseShardFlag("eval", "auto", env({ SLURM_ARRAY_TASK_ID: "x", SLURM_ARRAY_TASK_COUNT: "2" })),
    /SLURM_ARRAY_TASK_ID="x" is not a whole number/,
  );
  assert.throws(
    () => parseShardFlag("eval", "auto", env({ SLURM_ARRAY_TASK_ID: "5", SLURM_ARRAY_TASK_COUNT: "2" })),
    /outside the array 0\.\.1/,
  );
});

Deno.test("--shard auto in a Kubernetes Indexed Job needs the count", () => {
  assert.deepEqual(parseShardFlag("eval", "auto/3", env({ JOB_COMPLETION_INDEX: "2" })), {
    index: 2,
    count: 3,
  });
  assert.deepEqual(
    parseShardFlag("eval", "auto", env({ JOB_COMPLETION_INDEX: "0", KEG_SHARD_COUNT: "2" })),
    { index: 0, count: 2 },
  );
  assert.throws(
    () => parseShardFlag("eval", "auto", env({ JOB_COMPLETION_INDEX: "0" })),
    /needs the number of completions/,
  );
  assert.throws(
    () => parseShardFlag("eval", "auto/3", env({ JOB_COMPLETION_INDEX: "3" })),
    /out of range for 3 shards/,
  );
});

/** A hand-made shard file (no GPU): Σ k kᵀ of a 2-d toy slice. */
async function fakeShard(
  dir: string,
  key: string,
  i: number,
  n: number,
  range: [number, number],
  sum: number[],
  count: number,
) {
  const path = `${dir}/layer0-${key}.shard-${i}-of-${n}.safetensors`;
  await writeSafetensors(path, [{
    name: "mom2_sum",
    dtype: "F32",
    shape: [2, 2],
    data: Float32Array.from(sum),
  }], {
    kind: "keg-stats-shard",
    key,
    layer: "0",
    count: String(count),
    shard_index: String(i),
    shard_count: String(n),
    start: String(range[0]),
    end: String(range[1]),
    total: "8",
    model: "fp",
    corpus: "wiki.txt",
    n_samples: "8",
    max_length: "16",
    precision: "f32",
    batch_size: "4",
  });
  return path;
}

Deno.test("keg stats merge: sums shards exactly into the cache, refuses a folder holding several runs", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "keg_stats_merge_" });
  const cache = Deno.env.get("KEG_CACHE");
  const log = console.log;
  const lines: string[] = [];
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    Deno.env.set("KEG_CACHE", `${tmp}/cache`);
    await Deno.mkdir(`${tmp}/a`);
    const s0 = await fakeShard(`${tmp}/a`, "k1", 0, 2, [0, 4], [2, 1, 1, 4], 2);
    const s1 = await fakeShard(`${tmp}/a`, "k1", 1, 2, [4, 8], [6, 3, 3, 8], 6);
    await statsCommand(["merge", `${tmp}/a`]);
    // the path it reports (KEG_CACHE is process-wide: a module running alongside may change it meanwhile)
    const wrote = lines.at(-1)?.match(/→ (\S+)$/)?.[1];
    assert.ok(wrote?.endsWith("/stats/layer0-k1.safetensors"), `merge reports ${lines.at(-1)}`);
    const f = await openSafetensors(wrote!);
    assert.deepEqual(Array.from((await f.readFloat("mom2", "f32")).data), [1, 0.5, 0.5, 1.5]); // (Σ0 + Σ1) / 8
    assert.equal(f.metadata?.count, "8");
    await f.close();
    await fakeShard(`${tmp}/a`, "k2", 0, 2, [0, 4], [1, 0, 0, 1], 1);
    await assert.rejects(() => statsCommand(["merge", `${tmp}/a`]), /holds shards of 2 statistics runs/);
    await assert.rejects(() => statsCommand(["merge", s0]), /missing shard\(s\) 1\/2 of k1/);
    await assert.rejects(() => statsCommand(["merge", s1, `${tmp}/nope`]), /nope: no such file or folder/);
    await assert.rejects(() => statsCommand(["merge"]), UsageError);
  } finally {
    console.log = log;
    if (cache === undefined) Deno.env.delete("KEG_CACHE");
    else Deno.env.set("KEG_CACHE", cache);
    await Deno.remove(tmp, { recursive: true });
  }
});
