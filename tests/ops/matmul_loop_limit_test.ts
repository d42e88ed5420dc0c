import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { linearT, type MatmulKernel } from "../../lib/ops/matmul.ts";
import { randArray, testGpu } from "../_util.ts";

// llvmpipe stops a shader invocation's loops after 65,535 iterations: a K longer than that (a Qwen2.5 LM
// head's backward, dlogits [R, 152,064] · E [152,064, d]) silently gave wrong sums with the tiled and naive
// kernels until K was cut into pieces there. Every kernel must match the f64 sum.
Deno.test("matmul: K = 152,064 (past llvmpipe's loop cap) matches f64 with every kernel", async () => {
  const gpu = await testGpu();
  const V = 152_064, R = 3, d = 8;
  const e = randArray(V * d, 11), g = randArray(R * V, 12);
  const E = Tensor.from(gpu, e, [V, d], "f32"), G = Tensor.from(gpu, g, [R, V], "f32");
  const want = new Float64Array(R * d);
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < V; k++) {
      const gk = g[r * V + k];
      for (let j = 0; j < d; j++) want[r * d + j] += gk * e[k * d + j];
    }
  }
  const scale = Math.sqrt(V); // a sum of V products of U(−1, 1)-ish values
  for (const kernel of ["auto", "tiled", "naive", "direct", "skinny"] as MatmulKernel[]) {
    const y = await linearT(G, E, { layout: "out_in", outDtype: "f32", kernel });
    const got = await y.read();
    y.dispose();
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst < 1e-4 * scale, `${kernel}: max error ${worst} (sums of size ~${scale.toFixed(0)})`);
  }
  E.dispose(), G.dispose();
});
