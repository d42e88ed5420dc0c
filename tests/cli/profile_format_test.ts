import assert from "node:assert/strict";
import { formatProfile, mergeProfiles } from "../../lib/cli/profile.ts";
import { emptyCounters } from "../../lib/gpu/profile.ts";

// A serial (CPU-adapter) profile: host time is the stage's wall less the waits, and GPU busy is GPU time
// over GPU + host time; two devices' stages and ops are summed.
Deno.test("profile table: serial timing reports host time and GPU / (GPU + host)", () => {
  const stage = {
    stage: "v*",
    wallSeconds: 10,
    gpuSeconds: 3,
    dispatches: 100,
    readbacks: 2,
    waitSeconds: 8,
  };
  const op = { stage: "v*", op: "matmul(mm_texel)", count: 50, seconds: 3 };
  const rep = { ops: [op], stages: [stage], gpuSeconds: 3, serial: true };
  const one = mergeProfiles([rep], [emptyCounters()]);
  assert.equal(one.serial, true);
  const text = formatProfile(one);
  // host = 10 − 8 = 2 s; busy = 3 / (3 + 2) = 60 %
  assert.match(text, /v\*\s+10\.000\s+2\.000\s+3\.000\s+60\.0%\s+100\s+2/);
  assert.match(text, /each op is submitted alone/);
  const two = mergeProfiles([rep, { ...rep, stages: [{ ...stage, waitSeconds: 1 }] }], [
    emptyCounters(),
    emptyCounters(),
  ]);
  assert.equal(two.stages[0].waitSeconds, 9);
  assert.equal(two.ops[0].seconds, 6);
  assert.equal(two.ops[0].count, 100);
  const ts = formatProfile(mergeProfiles([{ ...rep, serial: undefined }], [emptyCounters()]));
  assert.match(ts, /timestamp queries/);
  assert.match(ts, /v\*\s+10\.000\s+3\.000\s+30\.0%/);
});
