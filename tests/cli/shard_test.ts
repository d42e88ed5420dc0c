/**
 * `--shard`: explicit i/n, SLURM job arrays and Kubernetes Indexed Jobs, and the errors when they disagree.
 * @module
 */
import assert from "node:assert/strict";
import { parseShardFlag, type ShardEnv } from "../../lib/cli/shard.ts";
import { UsageError } from "../../lib/cli/args.ts";

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
