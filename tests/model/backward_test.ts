import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { backwardFromLogits, disposeTaped, forwardWithTape } from "../../lib/model/backward.ts";
import { Tensor } from "../../lib/gpu/mod.ts";
import { axpy, cast } from "../../lib/ops/elementwise.ts";
import { randArray, sharedPath, WIRING_FIXTURES } from "../_util.ts";

// The whole-model backward (blocks above the edit layer, final norm, LM head) against central finite
// differences of the model's own forward, for each block wiring (WIRING_FIXTURES). loss = Σ W ⊙ logits over
// the real rows; the directional derivative along a random u from the backward must equal
// (loss(x + h·u) − loss(x − h·u)) / 2h.
for (const fixture of WIRING_FIXTURES) {
  Deno.test(`backward through layers 1… of ${fixture} matches finite differences`, async () => {
    const dir = sharedPath(`models/fixtures/${fixture}`);
    if (!dir) return;
    const model = await loadModel(dir, { quiet: true });
    try {
      const net = model.net;
      // ids inside every fixture's vocabulary (256 for the Llama-3 / Qwen ones, 512 for the others)
      const V0 = model.config.vocabSize;
      const id = (t: number) => t < V0 - 3 ? t : 3 + t % (V0 - 6);
      const b = padBatch([[5, 17, 99, 3, 250, 41, 7, 88, 12, 60, 300].map(id), [9, 401, 33, 77].map(id)]);
      const rows = Uint32Array.from([...Array(11).keys(), 11 + 0, 11 + 1, 11 + 2, 11 + 3]);
      const V = model.config.vocabSize, d = model.config.hiddenSize, T = b.batch * b.seq;
      const w = randArray(rows.length * V, 1);
      const u = randArray(T * d, 2);
      const { x } = await net.prefix(b, 0);
      const loss = async (shift: number): Promise<number> => {
        const xs = await cast(x, "f32");
        if (shift) {
          const ut = Tensor.from(xs.gpu, u.map((v) => v * shift), [T, d], "f32");
          await axpy(xs, 1, ut);
          ut.dispose();
        }
        const t = await forwardWithTape(net, xs, 1, b, rows);
        const logits = await t.logits.read();
        disposeTaped(t);
        let s = 0;
        for (let i = 0; i < logits.length; i++) s += w[i] * logits[i];
        return s;
      };
      const taped = await forwardWithTape(net, await cast(x, "f32"), 1, b, rows);
      const dLogits = Tensor.from(taped.logits.gpu, w, [rows.length, V], "f32");
      const dx = await (await backwardFromLogits(net, taped, dLogits, b)).read();
      let analytic = 0;
      for (let i = 0; i < dx.length; i++) analytic += dx[i] * u[i];
      const h = 1e-2;
      const numeric = (await loss(h) - await loss(-h)) / (2 * h);
      // f32 forward noise (~1e-6 of |loss|) over 2h plus the O(h²) truncation of the central difference
      assert.ok(
        Math.abs(analytic - numeric) <= 2e-3 * Math.abs(numeric) + 1e-3,
        `${fixture}: backward ${analytic} vs finite difference ${numeric}`,
      );
      x.dispose();
    } finally {
      await model.dispose();
    }
  });
}
