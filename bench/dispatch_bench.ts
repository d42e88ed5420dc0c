/**
 * Host cost of recording GPU work: N small dispatches (a 64-element axpy, so the GPU time is negligible)
 * recorded and submitted, three ways in one run:
 *
 * - `per-dispatch objects` (the baseline, keg's engine before the fast path): a fresh mapped uniform
 *   buffer, a bind group, an error scope and a compute pass for every dispatch;
 * - `engine`: {@link Gpu.dispatch} today (one compute pass for the batch, cached bind groups and
 *   uniforms, one error scope per submitted batch);
 * - `replay`: the same N dispatches captured once and replayed ({@link Capture.replay}).
 *
 * Each iteration records N dispatches and submits them without waiting for the GPU (the GPU is drained
 * outside the timed region before every iteration, see `drain`), so the figure is host time per dispatch.
 * Run `deno bench -A bench/dispatch_bench.ts`; N via KEG_BENCH_DISPATCHES (default 1000),
 * KEG_BENCH_DRAIN_EVERY=4 drains only every 4th iteration (the earlier setting, for comparison).
 * @module
 */
import { Gpu, Tensor } from "../lib/gpu/mod.ts";

const N = Number(Deno.env.get("KEG_BENCH_DISPATCHES") ?? "1000");
const gpu = await Gpu.open({ quiet: true });
const x = Tensor.from(gpu, new Float32Array(64).fill(1), [64], "f32");
const y = Tensor.from(gpu, new Float32Array(64), [64], "f32");
const pipe = await gpu.pipeline({ family: "elementwise", entry: "axpy", types: { ST: "f32" } });
const uniforms = new Uint32Array([64, 0, 0, 0]); // n, x offset, y offset, alpha
new Float32Array(uniforms.buffer)[3] = 1e-6;

function legacy(): void {
  const dev = gpu.device;
  const enc = dev.createCommandEncoder();
  const scopes: Promise<GPUError | null>[] = [];
  const transient: GPUBuffer[] = [];
  for (let i = 0; i < N; i++) {
    const ub = dev.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(ub.getMappedRange()).set(uniforms);
    ub.unmap();
    transient.push(ub);
    dev.pushErrorScope("validation");
    const group = dev.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: ub } },
        { binding: 1, resource: { buffer: x.buffer } },
        { binding: 2, resource: { buffer: y.buffer } },
      ],
    });
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1);
    pass.end();
    scopes.push(dev.popErrorScope());
  }
  dev.queue.submit([enc.finish()]);
  dev.queue.onSubmittedWorkDone().then(() => transient.forEach((b) => b.destroy()));
}

function engine(): void {
  for (let i = 0; i < N; i++) gpu.dispatch("axpy", pipe, [x.buffer, y.buffer], [1], uniforms);
  gpu.flush();
}

gpu.beginCapture();
engine();
const cap = gpu.endCapture();
await gpu.sync();

// The GPU is drained before every timed iteration (outside the timed region): on a CPU adapter the "GPU"
// is the same cores, and a previous batch still executing there would steal the cycles being measured
// (with a drain every 4th iteration the mean was ≈8× the best: lavapipe's threads running the earlier
// 1,000 dispatches while the next ones were recorded).
const DRAIN_EVERY = Number(Deno.env.get("KEG_BENCH_DRAIN_EVERY") ?? "1");
let iter = 0;
async function drain(): Promise<void> {
  if (++iter % DRAIN_EVERY === 0) await gpu.sync();
}

Deno.bench({
  name: `per-dispatch objects (${N} dispatches)`,
  group: "record",
  baseline: true,
  async fn(b) {
    await drain();
    b.start();
    legacy();
    b.end();
  },
});

Deno.bench({
  name: `engine (${N} dispatches)`,
  group: "record",
  async fn(b) {
    await drain();
    b.start();
    engine();
    b.end();
  },
});

Deno.bench({
  name: `replay (${N} dispatches)`,
  group: "record",
  async fn(b) {
    await drain();
    b.start();
    cap.replay();
    gpu.flush();
    b.end();
  },
});

globalThis.addEventListener("unload", () => {
  cap.dispose();
});
