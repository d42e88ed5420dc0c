import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { ADAM_STATS, adamDelta, adamDeltaState } from "../../lib/ops/optim.ts";
import { adamDeltaRef } from "../../lib/testing/optim_reference.ts";
import { assertClose, randArray, testGpu } from "../_util.ts";

Deno.test("adamDelta: steps of Adam + weight decay + clamp equal the f64 reference; loss parts; undo copy", async () => {
  const gpu = await testGpu();
  for (const d of [1, 7, 300, 1029]) {
    const s = { lr: 0.5, wdScale: 0.3, maxNorm: 1.7, klFactor: 0.0625 };
    const st = adamDeltaState(gpu, d, s, 4); // steps 5, 6 reuse the last bias correction
    const ref = { delta: new Float64Array(d), m: new Float64Array(d), v: new Float64Array(d), t: 0 };
    const nllHost = Float32Array.from([2.5, 1.25, 0.5]), wHost = Float32Array.from([0.5, 0.25, 0]);
    const loss = {
      nll: Tensor.from(gpu, nllHost, [3], "f32"),
      weights: Tensor.from(gpu, wHost, [3], "f32"),
      kl: Tensor.from(gpu, [0.75], [1], "f32"),
      bad: Tensor.from(gpu, new Float32Array(new Uint32Array([3]).buffer), [1], "f32"),
    };
    for (let step = 0; step < 6; step++) {
      const g = randArray(d, 100 * d + step, 2);
      const grad = Tensor.from(gpu, g, [d], "f32");
      const before = Float64Array.from(ref.delta);
      await adamDelta(s, st, grad, loss);
      const r = adamDeltaRef(s, ref, g, 4);
      grad.dispose();
      const tol = 4e-6 * Math.max(1, step);
      assertClose(await st.delta.read(), ref.delta, tol, 1e-5, `d=${d} step ${step} δ`);
      const stats = await st.stats.read();
      assertClose([stats[ADAM_STATS.nll]], [2.5 * 0.5 + 1.25 * 0.25], 1e-6, 0, "Σ w·nll");
      assertClose([stats[ADAM_STATS.kl]], [0.75 * 0.0625], 1e-7, 0, "kl");
      assertClose([stats[ADAM_STATS.normBefore]], [r.normBefore], 1e-5, 1e-5, "‖δ‖ before");
      assertClose([stats[ADAM_STATS.normAfter]], [r.normAfter], 1e-5, 1e-5, "‖δ‖ after");
      assert.equal(stats[ADAM_STATS.badGrad], 3);
      const state = await st.state.read();
      assertClose(state.subarray(2 * d, 3 * d), before, 1e-6, 1e-6, "δ before the step");
      assert.equal(state[3 * d], step + 1, "t");
    }
    const n = Math.hypot(...ref.delta);
    assert.ok(n <= s.maxNorm * (1 + 1e-6), "clamped");
    for (const t of [loss.nll, loss.weights, loss.kl, loss.bad, st.delta, st.state, st.stats]) t.dispose();
  }
});
