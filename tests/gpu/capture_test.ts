import assert from "node:assert/strict";
import { GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { axpy, cast, scale } from "../../lib/ops/elementwise.ts";
import { addToRows, sumRows } from "../../lib/ops/embedding.ts";
import { testGpu } from "../_util.ts";

Deno.test("capture/replay: replayed work equals the recorded work, writes included; nothing is allocated", async () => {
  const gpu = await testGpu();
  const y = Tensor.from(gpu, [1, 2, 3, 4, 5, 6], [2, 3], "f32");
  const v = Tensor.from(gpu, [10, 20, 30], [3], "f32");
  // one "step": y ← 0.5·(y + 2·copy(y)) with v added to row 1 (an index upload inside the step)
  const step = async () => {
    const t = await cast(y, "f32");
    await axpy(y, 2, t);
    t.dispose();
    await addToRows(y, v, Uint32Array.of(1));
    await scale(y, 0.5);
  };
  const host = (x: number[]) => {
    const out = x.map((a) => 0.5 * (3 * a));
    for (let j = 0; j < 3; j++) out[3 + j] = 0.5 * (3 * x[3 + j] + [10, 20, 30][j]);
    return out;
  };
  let want = [1, 2, 3, 4, 5, 6];
  await step();
  want = host(want);
  gpu.beginCapture();
  await step();
  const cap = gpu.endCapture();
  want = host(want);
  assert.deepEqual(Array.from(await y.read()), want.map(Math.fround));
  gpu.resetCounters();
  const before = gpu.memory().liveBytes;
  for (let i = 0; i < 3; i++) {
    cap.replay();
    want = host(want);
  }
  assert.deepEqual(Array.from(await y.read()), want.map(Math.fround));
  const c = gpu.counters();
  assert.equal(c.dispatches, 0, "a replay records no new dispatch");
  assert.equal(c.replayed, 3 * cap.dispatches);
  assert.equal(c.groupMisses, 0, "and creates no bind group");
  assert.equal(gpu.memory().liveBytes, before, "and allocates nothing");
  cap.dispose();
  y.dispose(), v.dispose();
});

Deno.test("capture: buffers it touched stay reserved until it is disposed; readbacks are refused", async () => {
  const gpu = await testGpu();
  const x = Tensor.from(gpu, [1, 2, 3, 4], [4], "f32");
  gpu.beginCapture();
  const tmp = await cast(x, "f32"); // allocated inside the capture, then released
  const buf = tmp.buffer;
  tmp.dispose();
  await assert.rejects(
    () => x.read(),
    (e: Error) => e instanceof GpuError && /inside a capture/.test(e.message),
  );
  const cap = gpu.endCapture();
  const other = Tensor.empty(gpu, [4], "f32");
  assert.notEqual(other.buffer, buf, "a reserved buffer is not handed out again");
  other.dispose();
  gpu.beginCapture();
  assert.throws(() => gpu.beginCapture(), /already being recorded/);
  gpu.endCapture().dispose();
  cap.dispose();
  const again = Tensor.empty(gpu, [4], "f32");
  assert.equal(again.buffer, buf, "after dispose the pool reuses it");
  again.dispose(), x.dispose();
});

Deno.test("engine: many dispatches share a pass and bind groups are cached; writes keep their order", async () => {
  const gpu = await testGpu();
  const y = Tensor.from(gpu, new Float32Array(8), [8], "f32");
  const x = Tensor.from(gpu, new Float32Array(8).fill(1), [8], "f32");
  gpu.resetCounters();
  for (let i = 0; i < 50; i++) await axpy(y, 1, x);
  // a write recorded after pending dispatches lands after them, then more work reads it
  x.write(new Float32Array(8).fill(2));
  await axpy(y, 1, x);
  const c = gpu.counters();
  assert.equal((await y.read())[0], 52);
  assert.equal(c.groupMisses <= 2, true, `bind groups created: ${c.groupMisses}`);
  assert.equal(c.submits, 0, "no submit before the readback");
  y.dispose(), x.dispose();
});

// A temporary too large for the buffer pool (> 64 MiB), allocated and released while the step is being
// captured: the capture must keep it, or every replay reads a destroyed buffer (what happened to v*'s
// capture once statistics had filled the pool in the same process).
Deno.test("capture/replay: a large temporary released while recording stays alive for the replays", async () => {
  const gpu = await testGpu();
  const rows = 262_144, d = 65; // 68 MB of f32
  const x = Tensor.from(gpu, new Float32Array(rows * d).fill(0.5), [rows, d], "f32");
  const y = Tensor.from(gpu, new Float32Array(d), [d], "f32");
  const step = async () => {
    const t = await cast(x, "f32"); // the large temporary
    const g = await sumRows(t, Uint32Array.of(0, rows - 1));
    t.dispose();
    await axpy(y, 1, g);
    g.dispose();
  };
  await step();
  gpu.beginCapture();
  await step();
  const cap = gpu.endCapture();
  await gpu.sync(); // (the released temporary would be destroyed here)
  for (let i = 0; i < 2; i++) {
    cap.replay();
    await gpu.sync();
  }
  assert.deepEqual([...await y.read()], new Array(d).fill(4), "four steps of 0.5 + 0.5");
  cap.dispose();
  x.dispose(), y.dispose();
});

// The bind-group cache drops its groups when full. A capture's groups are pinned when it ends, so a drop
// while it records must spare them: one dropped then had its uniform buffer destroyed under the replays
// ("Buffer with 'geluNew.uniforms' label has been destroyed", ~40 edits into a mixed-precision eval).
Deno.test("capture: a full bind-group cache while recording keeps the capture's groups for its replays", async () => {
  const gpu = await testGpu();
  const before = gpu.setGroupCacheLimit(4);
  const y = Tensor.from(gpu, [0, 0, 0, 0], [4], "f32");
  const x = Tensor.from(gpu, [1, 1, 1, 1], [4], "f32");
  try {
    gpu.beginCapture();
    // ten distinct uniform words: ten groups, the cache overflows twice while recording
    for (let i = 1; i <= 10; i++) await axpy(y, i, x);
    const cap = gpu.endCapture();
    // more distinct groups after it ends (drops again), and submits, so retired uniforms get destroyed
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 10; j++) await axpy(y, 0.5 + j, x);
      await gpu.sync();
    }
    const base = (await y.read())[0];
    cap.replay();
    cap.replay();
    const got = await y.read();
    assert.deepEqual(Array.from(got), [0, 1, 2, 3].map(() => base + 2 * 55));
    cap.dispose();
  } finally {
    gpu.setGroupCacheLimit(before);
    x.dispose(), y.dispose();
  }
});
