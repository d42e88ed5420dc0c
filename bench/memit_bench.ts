/**
 * MEMIT / AlphaEdit benchmarks (`deno bench -A bench/memit_bench.ts`):
 * - `solve`: MEMIT's adj = (λC + KᵀK)⁻¹Kᵀ for 10 keys at d = KEG_BENCH_MEMIT_D (default 1024,2048,4096),
 *   baseline d = 1024; AlphaEdit's projected solve at the same d with a rank-d/2 null space.
 * - `eigen`: the Jacobi eigensolver at d = KEG_BENCH_EIGEN_D (default 128,256,512; each doubling costs ≈ 8×,
 *   1024 takes minutes on lavapipe), baseline the smallest.
 * - `sweep`: ONE Jacobi sweep (`maxSweeps: 1`) of a dense SPD C at d = KEG_BENCH_SWEEP_D (default
 *   1024,2048,4096), baseline d = 1024: a full solve is (sweeps to converge) × this, and at d ≥ 1024 a full
 *   solve takes ten minutes and more on lavapipe (the sweep count of the `eigen` rows carries over).
 * - `batch`: one MEMIT batch of KEG_BENCH_MEMIT_BATCH requests (default 1,10; add 100 for the full row)
 *   on tiny-gpt2-counterfact, layer 0 with ../shared's C, z with KEG_BENCH_Z_STEPS forwards (default 2,
 *   so the batch mechanics dominate), f32 and f16; baseline batch 1 in f32.
 * Only ratios within one run are meaningful (lavapipe shares the CPU with everything else).
 * @module
 */
import { Gpu, Tensor } from "../lib/gpu/mod.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { symmetricEigen } from "../lib/ops/eigen.ts";
import { alphaEditAdj, memitAdj } from "../lib/edit/memit_solve.ts";
import { loadModel } from "../lib/model/load.ts";
import { loadStatsFile } from "../lib/edit/covariance.ts";
import { applyMemitOverrides, loadMemitHparams } from "../lib/edit/memit_hparams.ts";
import { MemitEditor } from "../lib/edit/memit.ts";
import type { EditRequest } from "../lib/edit/request.ts";

const env = (k: string, d: string) => (Deno.env.get(k) ?? d).split(",").map(Number).filter((x) => x > 0);
const SOLVE_D = env("KEG_BENCH_MEMIT_D", "1024,2048,4096");
const EIGEN_D = env("KEG_BENCH_EIGEN_D", "128,256,512");
const SWEEP_D = env("KEG_BENCH_SWEEP_D", "1024,2048,4096");
const BATCHES = env("KEG_BENCH_MEMIT_BATCH", "1,10");
const Z_STEPS = env("KEG_BENCH_Z_STEPS", "2")[0];

const gpu = await Gpu.open({ quiet: true });

function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** A random SPD C = XᵀX/n + 0.01·I [d, d] built on the GPU. */
async function spd(d: number): Promise<Tensor> {
  const n = d + 16;
  const x = Tensor.from(gpu, rand(n * d, d), [n, d], "f32");
  const c = await matmul(x, x, { transA: true, alpha: 1 / n, outDtype: "f32" });
  x.dispose();
  const host = await c.read();
  for (let i = 0; i < d; i++) host[i * d + i] += 0.01;
  c.write(host);
  return c;
}

/**
 * A dense SPD C = I + E [d, d] built on the host, E symmetric with entries uniform in ±0.1/√d (eigenvalues
 * within about 1 ± 0.12): the solve and sweep rows' cost does not depend on the values, and the GPU
 * matmul at d = 4096 of {@link spd} hits "texture … has been destroyed" in mm_texel on lavapipe (seen
 * 2026-12-02, not fixed here: lib/ops/matmul*.ts belongs to another change).
 */
function hostSpd(d: number): Tensor {
  const e = rand(d * d, d + 1), c = new Float32Array(d * d), s = 0.1 / Math.sqrt(d);
  for (let i = 0; i < d; i++) {
    c[i * d + i] = 1 + s * e[i * d + i];
    for (let j = 0; j < i; j++) c[i * d + j] = c[j * d + i] = s * e[i * d + j];
  }
  return Tensor.from(gpu, c, [d, d], "f32");
}

for (const d of SOLVE_D) {
  const c = hostSpd(d);
  const K = rand(10 * d, 7);
  const r = Math.floor(d / 2);
  const u = new Float32Array(d * r);
  for (let j = 0; j < r; j++) u[(2 * j) * r + j] = 1; // orthonormal columns e_0, e_2, …
  const u0 = Tensor.from(gpu, u, [d, r], "f32");
  Deno.bench({
    name: `MEMIT solve d=${d}, 10 keys`,
    group: "solve",
    baseline: d === SOLVE_D[0],
    n: 3,
    warmup: 1,
    async fn() {
      await memitAdj(c, K, 10, 10);
    },
  });
  Deno.bench({
    name: `AlphaEdit solve d=${d}, rank ${r}, 10 keys`,
    group: "solve",
    n: 3,
    warmup: 1,
    async fn() {
      await alphaEditAdj(u0, null, K, 10, 1);
    },
  });
}

for (const d of EIGEN_D) {
  const c = await spd(d);
  Deno.bench({
    name: `eigen (Jacobi) d=${d}`,
    group: "eigen",
    baseline: d === EIGEN_D[0],
    n: 1,
    warmup: 0,
    async fn() {
      const r = await symmetricEigen(c);
      r.vectors.dispose();
      console.log(`eigen d=${d}: ${r.sweeps} sweeps to converge`);
    },
  });
}

for (const d of SWEEP_D) {
  const c = hostSpd(d);
  Deno.bench({
    name: `eigen: one Jacobi sweep, d=${d}`,
    group: "sweep",
    baseline: d === SWEEP_D[0],
    n: 1,
    warmup: 0,
    async fn() {
      const r = await symmetricEigen(c, { maxSweeps: 1 });
      r.vectors.dispose();
    },
  });
}

const dir = new URL("../../shared/models/tiny-gpt2-counterfact", import.meta.url).pathname;
const cf = new URL("../../shared/data/datasets/counterfact-rome/counterfact.json", import.meta.url).pathname;
let haveShared = true;
try {
  Deno.statSync(dir);
} catch {
  haveShared = false;
  console.warn("SKIP batch benches: ../shared/models/tiny-gpt2-counterfact not found");
}
if (haveShared && BATCHES.length) {
  const records = JSON.parse(await Deno.readTextFile(cf)) as {
    requested_rewrite: { prompt: string; subject: string; target_new: { str: string } };
  }[];
  const requests: EditRequest[] = records.slice(0, Math.max(...BATCHES)).map((r) => ({
    prompt: r.requested_rewrite.prompt,
    subject: r.requested_rewrite.subject,
    targetNew: r.requested_rewrite.target_new.str,
  }));
  const cfg = new URL("../configs/MEMIT/tiny-gpt2-counterfact.yaml", import.meta.url).pathname;
  for (const precision of ["f32", "f16"] as const) {
    const model = await loadModel(dir, { precision, quiet: true });
    const hp = applyMemitOverrides(await loadMemitHparams(cfg), { layers: "[0]", v_num_grad_steps: Z_STEPS });
    const editor = new MemitEditor(model, hp, {
      stats: (l) => loadStatsFile(model, l, `${dir}/rome_reference/mom2_layer0.safetensors`),
      templates: [["{}"], ["The news. {}", "I said. {}", "You know. {}", "Because. {}", "Therefore. {}"]],
    });
    for (const B of BATCHES) {
      Deno.bench({
        name: `MEMIT batch of ${B} (${precision}, ${Z_STEPS} z forwards)`,
        group: "batch",
        baseline: B === BATCHES[0] && precision === "f32",
        n: 1,
        warmup: 0,
        async fn() {
          await editor.editBatch(requests.slice(0, B));
          await editor.restore();
        },
      });
    }
  }
}
