import assert from "node:assert/strict";
import { Gpu, GpuError, Tensor } from "../../lib/gpu/mod.ts";
import { axpy } from "../../lib/ops/elementwise.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { testGpu } from "../_util.ts";

Deno.test("adapter report names the limits and shader-f16", async () => {
  const gpu = await testGpu();
  const r = gpu.report;
  assert.ok(r.description.length > 0);
  assert.equal(typeof r.shaderF16, "boolean");
  assert.ok(r.maxStorageBufferBindingSize >= 128 << 20);
  assert.equal(r.maxBindingBytes, Math.min(r.maxStorageBufferBindingSize, r.maxBufferSize));
});

Deno.test("without shader-f16, f16 tensors are stored as f32 and kernels still run (with a warning)", async () => {
  const gpu = await Gpu.open({ disableF16: true, quiet: true });
  try {
    assert.equal(gpu.f16, false);
    const x = Tensor.from(gpu, [1, 2, 3], [3], "f16");
    assert.equal(x.dtype, "f32");
    const y = Tensor.from(gpu, [0.1, 0.2, 0.3], [3], "f16");
    await axpy(y, 2, x);
    assert.deepEqual(Array.from(await y.read()), [2.1, 4.2, 6.3].map(Math.fround));
    const c = await matmul(
      Tensor.from(gpu, [1, 2, 3, 4], [2, 2], "f16"),
      Tensor.from(gpu, [1, 0, 0, 1], [2, 2], "f16"),
    );
    assert.deepEqual(Array.from(await c.read()), [1, 2, 3, 4]);
  } finally {
    await gpu.destroy();
  }
});

Deno.test("several devices at once; mixing their tensors is a clear error", async () => {
  const [a, b] = await Gpu.openMany(2, { quiet: true });
  try {
    assert.notEqual(a.device, b.device);
    assert.deepEqual([a.label, b.label], ["gpu0", "gpu1"]);
    const x = Tensor.from(a, [1, 2], [2], "f32"), y = Tensor.from(b, [1, 2], [2], "f32");
    await assert.rejects(
      () => axpy(y, 1, x),
      (e: Error) => e instanceof GpuError && /different devices/.test(e.message),
    );
  } finally {
    await a.destroy();
    await b.destroy();
  }
});

Deno.test("a tensor whose single row exceeds the binding limit, or a bad upload, names the tensor", async () => {
  const gpu = await testGpu({ maxBindingBytes: 1024 });
  assert.throws(
    () => Tensor.empty(gpu, [2, 300], "f32", { name: "model.embed_tokens.weight" }),
    /model\.embed_tokens\.weight.*binding limit/,
  );
  assert.throws(() => Tensor.from(gpu, [1, 2, 3], [2, 2], "f32", { name: "w" }), /w: data has 3 values/);
  const t = Tensor.from(gpu, new Float32Array(600), [300, 2], "f32");
  assert.ok(t.chunks.length >= 2, "chunked below the limit");
  await gpu.destroy();
});

Deno.test("GPU validation errors surface as GpuError naming the op", async () => {
  const gpu = await testGpu();
  const big = Tensor.from(gpu, new Float32Array(8), [8], "f32");
  const pipe = await gpu.pipeline({ family: "elementwise", entry: "scale", types: { ST: "f32" } });
  assert.throws(() => gpu.dispatch("bad-op", pipe, [null, big.buffer], [70000]), /bad-op: dispatch size/);
  // no uniform buffer for binding 0: WebGPU rejects the bind group; the error names the op at the next sync
  gpu.dispatch("bad-op", pipe, [null, big.buffer], [1]);
  await assert.rejects(
    () => gpu.sync(),
    (e: Error) => e instanceof GpuError && e.message.startsWith("bad-op:"),
  );
  // the device stays usable
  assert.equal((await big.read()).length, 8);
});
