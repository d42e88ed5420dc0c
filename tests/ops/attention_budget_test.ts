import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  attentionTiles,
} from "../../lib/ops/attention.ts";
import {
  attentionLoopIterations,
  hasLoopLimit,
  LLVMPIPE_LOOP_LIMIT,
  type LoopShape,
} from "../../lib/ops/attention_budget.ts";
import { attentionBackwardReference, attentionReference } from "../../lib/testing/attention_reference.ts";
import { maxAbsDiff, randArray, testGpu } from "../_util.ts";

// llvmpipe stops all loops of a shader invocation after 65,535 iterations: attention over long sequences
// (more so at head_dim 256) must take the design that fits or fail clearly, never return wrong numbers.
// The limit exists only on llvmpipe / lavapipe; elsewhere these tests check only the estimates.

const CAP = Math.floor(0.9 * LLVMPIPE_LOOP_LIMIT);

function shape(S: number, hd: number, group = 1): LoopShape {
  return { seqQ: S, seqKv: S, headDim: hd, group, window: 0, maxKvLength: S, tiles: attentionTiles(hd) };
}

/** The largest sequence length whose estimate fits the cap. */
function largest(design: "row" | "tiled", pass: "forward" | "backward", hd: number, group = 1): number {
  let S = 1;
  while (attentionLoopIterations(shape(S + 1, hd, group), design, pass) <= CAP) S++;
  return S;
}

async function run(
  S: number,
  hd: number,
  heads: number,
  kvHeads: number,
  kernel: AttentionOptions["kernel"],
) {
  const gpu = await testGpu();
  const c = { batch: 1, seqQ: S, seqKv: S, heads, kvHeads, headDim: hd };
  const q = randArray(S * heads * hd, 1),
    k = randArray(S * kvHeads * hd, 2),
    v = randArray(S * kvHeads * hd, 3);
  const dOut = randArray(q.length, 4);
  const t = (a: Float32Array, w: number) => Tensor.from(gpu, a, [S, w], "f32");
  const [tq, tk, tv, td] = [t(q, heads * hd), t(k, kvHeads * hd), t(v, kvHeads * hd), t(dOut, heads * hd)];
  return {
    forward: async () => {
      const o = await attention(tq, tk, tv, { ...c, kernel });
      const got = await o.read();
      o.dispose();
      return maxAbsDiff(got, attentionReference(q, k, v, c));
    },
    backward: async () => {
      const g = await attentionBackward(tq, tk, tv, td, { ...c, kernel });
      const ref = attentionBackwardReference(q, k, v, dOut, c);
      let worst = 0;
      for (const n of ["dq", "dk", "dv"] as const) {
        const got = await g[n].read();
        g[n].dispose();
        let scale = 0;
        for (const x of ref[n]) scale = Math.max(scale, Math.abs(x));
        worst = Math.max(worst, maxAbsDiff(got, ref[n]) / scale);
      }
      return worst;
    },
    dispose: () => [tq, tk, tv, td].forEach((x) => x.dispose()),
  };
}

Deno.test("attention loop estimates grow with keys, head_dim and group; a window bounds them", () => {
  const base = attentionLoopIterations(shape(100, 128), "row", "forward");
  assert.ok(attentionLoopIterations(shape(200, 128), "row", "forward") > 1.9 * base);
  assert.ok(attentionLoopIterations(shape(100, 256), "row", "forward") > 1.9 * base);
  assert.ok(
    attentionLoopIterations(shape(100, 128, 4), "row", "backward") >
      attentionLoopIterations(shape(100, 128, 1), "row", "backward"),
  );
  const windowed = { ...shape(4000, 128), window: 64 };
  assert.ok(
    attentionLoopIterations(windowed, "row", "forward") <
      attentionLoopIterations(shape(80, 128), "row", "forward"),
  );
  // the tiled design walks far fewer loop iterations per invocation than the row one
  assert.ok(largest("tiled", "forward", 256) > 3 * largest("row", "forward", 256));
  assert.ok(hasLoopLimit("llvmpipe (LLVM 15.0.6, 256 bits)") && !hasLoopLimit("NVIDIA H200"));
});

Deno.test("on llvmpipe: the largest sizes the estimates accept are right, longer ones switch design or fail clearly", async () => {
  const gpu = await testGpu();
  if (!hasLoopLimit(gpu.report.description)) return;
  // the estimates are upper bounds: at the largest accepted length each design is still exact
  const rowFwd = largest("row", "forward", 128);
  let r = await run(rowFwd, 128, 1, 1, "row");
  assert.ok(await r.forward() < 1e-5, `row forward at ${rowFwd} keys`);
  r.dispose();
  const rowKv = largest("row", "backward", 128, 2);
  r = await run(rowKv, 128, 2, 1, "row");
  assert.ok(await r.backward() < 1e-4, `row backward at ${rowKv} queries × 2 heads`);
  r.dispose();
  const tiledFwd = largest("tiled", "forward", 256);
  r = await run(tiledFwd, 256, 1, 1, "tiled");
  assert.ok(await r.forward() < 1e-5, `tiled forward at ${tiledFwd} keys, head_dim 256`);
  r.dispose();
  // head_dim 256 over 160 tokens: too long for the row kernels, so auto runs the tiled ones (exactly)
  assert.ok(attentionLoopIterations(shape(160, 256), "row", "forward") > CAP);
  r = await run(160, 256, 2, 1, "auto");
  assert.ok(await r.forward() < 1e-5, "auto forward, 160 keys at head_dim 256");
  assert.ok(await r.backward() < 1e-4, "auto backward, 160 keys at head_dim 256");
  // asking for the row design there, or for a length neither design fits, is an error
  await assert.rejects(
    run(160, 256, 2, 1, "row").then((x) => x.forward()),
    /llvmpipe stops a shader's loops after 65535 iterations .* row attention forward over 160 keys at head_dim 256/,
  );
  await assert.rejects(
    run(tiledFwd + 200, 256, 1, 1, "auto").then((x) => x.forward()),
    /the other design does not fit either/,
  );
});
