import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { matmul } from "../../lib/ops/matmul.ts";
import { texelKernels, texelWorkspaceBudget } from "../../lib/ops/matmul_texel.ts";
import { randArray, testGpu } from "../_util.ts";

function reference(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      for (let j = 0; j < n; j++) c[i * n + j] += x * b[p * n + j];
    }
  }
  return c;
}

// The texel workspace releases textures when it outgrows its budget. A product that has packed op(A) and
// then needs a new op(B) texture over the budget must keep its op(A) texture (releasing every role's
// texture there destroyed the one it was about to read: "Texture 'matmul texel workspace A:…' has been
// destroyed" in the MEMIT bench at d = 4096). A tiny budget makes every product go through the release.
Deno.test("texel workspace: over budget, only the role being packed is released; products stay right", async () => {
  const gpu = await testGpu();
  if (!texelKernels(gpu)) {
    console.warn("SKIP texel workspace test: not a CPU adapter");
    return;
  }
  const before = texelWorkspaceBudget(gpu, 80 << 10);
  try {
    for (const [m, k, n] of [[64, 200, 96], [130, 64, 300], [64, 200, 96], [200, 300, 70]]) {
      const a = randArray(m * k, m + k), b = randArray(k * n, k + n);
      const A = Tensor.from(gpu, a, [m, k], "f32"), B = Tensor.from(gpu, b, [k, n], "f32");
      const c = await matmul(A, B, { kernel: "texel" });
      const got = await c.read();
      const want = reference(a, b, m, k, n);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      assert.ok(worst < 1e-4 * Math.sqrt(k), `${m}×${k}·${k}×${n}: max error ${worst}`);
      for (const t of [A, B, c]) t.dispose();
    }
    await gpu.sync();
  } finally {
    texelWorkspaceBudget(gpu, before);
  }
});
