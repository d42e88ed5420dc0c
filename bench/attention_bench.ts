/**
 * Attention kernels (forward + backward, as the v* optimisation runs them) per pipeline variant: head_dim ≤
 * 128 runs the 128-wide tiles, 129…256 (GPT-J) the 256-wide ones. Each group compares, in one run:
 *
 * - `hd128 on the 256 variant` against its baseline `hd128` (the variant auto picks): what a single 256-wide
 *   pipeline would cost the heads ≤ 128, i.e. why there are two variants;
 * - `hd256 × H/2` against `hd128 × H` (same q/k/v widths and FLOPs): the 256 variant's cost per FLOP.
 *
 * Both designs (`tiled`, `row`) on whatever adapter runs it (lavapipe here: `row` is what auto picks).
 * Run `./keg deno bench -A bench/attention_bench.ts`; sizes via KEG_BENCH_ATTN ("batch,seq,heads", default
 * "2,64,8") and KEG_BENCH_N (iterations, default 10).
 * @module
 */
import { Gpu, Tensor } from "../lib/gpu/mod.ts";
import { attention, attentionBackward, type AttentionKernel, attentionTiles } from "../lib/ops/attention.ts";

const gpu = await Gpu.open({ quiet: true });
const [B, S, H] = (Deno.env.get("KEG_BENCH_ATTN") ?? "2,64,8").split(",").map(Number);
const N = Number(Deno.env.get("KEG_BENCH_N") ?? "10");

function rand(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    out[i] = x / 2 ** 31 - 1;
  }
  return out;
}

function bench(
  kernel: AttentionKernel,
  name: string,
  heads: number,
  hd: number,
  wide: boolean,
  base: boolean,
) {
  const shape = { batch: B, seqQ: S, seqKv: S, heads, kvHeads: heads, headDim: hd, kernel };
  const opts = wide ? { ...shape, tiles: attentionTiles(256) } : shape;
  const rows = B * S, w = heads * hd;
  const q = Tensor.from(gpu, rand(rows * w, 1), [rows, w], "f32");
  const k = Tensor.from(gpu, rand(rows * w, 2), [rows, w], "f32");
  const v = Tensor.from(gpu, rand(rows * w, 3), [rows, w], "f32");
  const dOut = Tensor.from(gpu, rand(rows * w, 4), [rows, w], "f32");
  Deno.bench({
    name: `${kernel} ${name}`,
    group: `attention fwd+bwd ${kernel} B${B} S${S} width ${H * 128}`,
    baseline: base,
    n: N,
    warmup: 2,
    async fn() {
      const o = await attention(q, k, v, opts);
      const g = await attentionBackward(q, k, v, dOut, opts);
      await gpu.sync();
      for (const t of [o, g.dq, g.dk, g.dv]) t.dispose();
    },
  });
}

for (const kernel of ["row", "tiled"] as const) {
  bench(kernel, `hd128 × ${H}`, H, 128, false, true);
  bench(kernel, `hd128 × ${H} on the 256 variant`, H, 128, true, false);
  bench(kernel, `hd256 × ${H / 2}`, H / 2, 256, false, false);
}
