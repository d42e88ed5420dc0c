/**
 * MEMIT and AlphaEdit with the model split over two devices (two logical devices on one adapter, as
 * `--devices 0,1,1,1,1,1` gives: layer 0 on gpu0, layers 1–5 on gpu1, so the two edited layers, their C,
 * their null spaces and AlphaEdit's key caches live on different devices and z's forward crosses them)
 * write the same ΔW as on one device, bit for bit: every layer's factors (R, adj) of two sequential
 * batches, and the z of every request. tiny-llama-counterfact, f32, layers [0, 1], 2 z forwards, synthetic
 * diagonal C (no corpus pass; eight eigenvalues under the threshold, so the null space is instant).
 */
import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { loadModel } from "../../lib/model/load.ts";
import { applyMemitOverrides, loadMemitHparams } from "../../lib/edit/memit_hparams.ts";
import { type MemitBatchResult, MemitEditor } from "../../lib/edit/memit.ts";
import type { Stats } from "../../lib/edit/covariance.ts";
import { nullSpaceOf } from "../../lib/edit/null_space.ts";
import { sharedPath } from "../_util.ts";

const BATCHES = [
  [
    { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" },
    { prompt: "{} is located in", subject: "Shanghai", targetNew: "Dresden" },
  ],
  [{ prompt: "The mother tongue of {} is", subject: "Danielle Darrieux", targetNew: "English" }],
];
const TEMPLATES = [["{}"], ["The city. {}", "Because of this. {}"]];

async function run(alg: "MEMIT" | "AlphaEdit", devices: number | string): Promise<MemitBatchResult[]> {
  const dir = sharedPath("models/tiny-llama-counterfact")!;
  const model = await loadModel(dir, { devices, quiet: true });
  try {
    const d = model.config.intermediateSize;
    const stats = (l: number): Promise<Stats> => {
      const c = new Float32Array(d * d);
      for (let i = 0; i < d; i++) c[i * d + i] = i % 56 === 3 ? 1e-3 : 1 + (i % 7) / 7;
      return Promise.resolve({
        c: Tensor.from(model.net.deviceOf(l), c, [d, d], "f32"),
        count: 1,
        source: "file",
        path: "synthetic",
      });
    };
    const hp = applyMemitOverrides(await loadMemitHparams(`configs/${alg}/tiny-llama-counterfact.yaml`), {
      v_num_grad_steps: 2,
    });
    const ed = new MemitEditor(model, hp, {
      stats,
      nullSpaces: async (l) => {
        const s = await stats(l);
        const ns = await nullSpaceOf(s.c, hp.nullspaceThreshold);
        s.c.dispose();
        return ns;
      },
      templates: TEMPLATES,
    });
    const out: MemitBatchResult[] = [];
    try {
      for (const b of BATCHES) out.push(await ed.editBatch(b));
      if (typeof devices === "string") {
        assert.notEqual(model.net.deviceOf(0), model.net.deviceOf(1), "layers 0 and 1 on different devices");
      }
    } finally {
      ed.dispose();
    }
    return out;
  } finally {
    await model.dispose();
  }
}

for (const alg of ["MEMIT", "AlphaEdit"] as const) {
  Deno.test({
    name: `${alg} with layers 0 and 1 on two devices writes the same ΔW as one device (2 sequential batches)`,
    ignore: sharedPath("models/tiny-llama-counterfact") === null,
    fn: async () => {
      const one = await run(alg, 1), two = await run(alg, "0,1,1,1,1,1");
      for (const [b, r] of one.entries()) {
        const s = two[b];
        assert.deepEqual(
          s.z.map((z) => Array.from(z.vStar)),
          r.z.map((z) => Array.from(z.vStar)),
          `batch ${b} z`,
        );
        for (const [i, L] of r.layers.entries()) {
          const M = s.layers[i];
          assert.equal(M.layer, L.layer);
          assert.deepEqual(Array.from(M.resid), Array.from(L.resid), `batch ${b} layer ${L.layer}: R`);
          assert.deepEqual(Array.from(M.adj), Array.from(L.adj), `batch ${b} layer ${L.layer}: adj`);
          assert.ok(L.dWFro > 0, `batch ${b} layer ${L.layer} writes`);
        }
      }
      if (alg === "AlphaEdit") assert.equal(one[0].layers[0].nullRank, 8);
    },
  });
}
