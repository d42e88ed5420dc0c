import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { cast } from "../../lib/ops/elementwise.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { randArray, testGpu } from "../_util.ts";

// On a CPU adapter the profile must book each op's real kernel time: lavapipe's timestamps do not bracket
// its kernels (a 1 s matmul read as 0.1 ms), so keg times such adapters serially. A 768³ matmul (0.9 GFLOP)
// must then weigh far more than a 16-element copy, and the booked total cannot exceed the wall time.
Deno.test("profile: per-op GPU time on a CPU adapter is the kernels' own (serial timing)", async () => {
  const gpu = await testGpu();
  if (!gpu.isCpuAdapter) {
    console.warn("SKIP serial profile check: not a CPU adapter (timestamps are used there)");
    return;
  }
  const n = 768;
  const a = Tensor.from(gpu, randArray(n * n, 1), [n, n], "f32");
  const b = Tensor.from(gpu, randArray(n * n, 2), [n, n], "f32");
  const small = Tensor.from(gpu, randArray(16, 3), [16], "f32");
  (await matmul(a, b)).dispose(); // compile outside the profile
  (await cast(small, "f32")).dispose();
  await gpu.sync();
  assert.ok(gpu.startProfile());
  assert.equal(gpu.timesEachOp, true);
  const t0 = performance.now();
  const ys: Tensor[] = [];
  for (let i = 0; i < 2; i++) {
    ys.push(await matmul(a, b));
    ys.push(await cast(small, "f32"));
  }
  await ys[ys.length - 1].read();
  const wall = (performance.now() - t0) / 1000;
  const rep = await gpu.stopProfile();
  assert.equal(gpu.timesEachOp, false);
  assert.equal(rep.serial, true);
  const mm = rep.ops.filter((o) => o.op.startsWith("matmul"));
  const cp = rep.ops.find((o) => o.op === "cast");
  assert.ok(mm.length > 0 && cp, `ops: ${JSON.stringify(rep.ops)}`);
  const mmSeconds = mm.reduce((s, o) => s + o.seconds, 0);
  assert.equal(cp.count, 2);
  assert.ok(mmSeconds > 10 * cp.seconds, `matmul ${mmSeconds} s vs copy ${cp.seconds} s`);
  assert.ok(rep.gpuSeconds <= wall * 1.01 + 1e-3, `booked ${rep.gpuSeconds} s > wall ${wall} s`);
  // 2 × 0.9 GFLOP: at most ~100 GFLOP/s on a CPU, so at least ~18 ms of kernel time
  assert.ok(mmSeconds > 18e-3, `matmul booked only ${mmSeconds} s`);
  for (const t of [a, b, small, ...ys]) t.dispose();
});
