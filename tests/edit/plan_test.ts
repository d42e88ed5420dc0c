import assert from "node:assert/strict";
import { Gpu } from "../../lib/gpu/device.ts";
import { openVirtual, virtualLike } from "../../lib/gpu/virtual.ts";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { applyOverrides, loadHparams } from "../../lib/edit/hparams.ts";
import { planEdit, proposeSplit } from "../../lib/edit/plan.ts";
import { loadStatsFile } from "../../lib/edit/covariance.ts";
import { RomeEditor } from "../../lib/edit/rome.ts";
import { loadModel } from "../../lib/model/load.ts";
import { parseConfig } from "../../lib/model/config.ts";
import { scoreTargets, topNext } from "../../lib/model/score.ts";
import type { Precision } from "../../lib/model/precision.ts";
import { sharedPath } from "../_util.ts";

// keg plan against measurement: the same edit (probe, templates, k*, v*, C and its factor, update, probe),
// once on lavapipe and once on virtual devices that mimic it; the planned peak must be within 5 % of the
// measured one on every device.

const REQ = { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" };
const MODELS = [
  { name: "tiny-gpt2-counterfact", config: "configs/ROME/tiny-gpt2-counterfact.yaml", layer: 0 },
  { name: "tiny-llama-counterfact", config: "configs/R-ROME/tiny-llama-counterfact.yaml", layer: 1 },
];

async function measured(dir: string, hpPath: string, layer: number, precision: Precision, n: number) {
  const hp = applyOverrides(await loadHparams(hpPath), {
    precision,
    v_num_grad_steps: 2,
    context_template_length_params: [[5, 5]],
  });
  // a fresh cache: the measured edit samples its context templates, as keg plan assumes (a first edit)
  const cache = await Deno.makeTempDir();
  const gpus = await Gpu.openMany(n, { quiet: true });
  const m = await loadModel(dir, { precision, gpus, quiet: true });
  try {
    const stats = await loadStatsFile(m, layer, `${dir}/rome_reference/mom2_layer${layer}.safetensors`);
    const tok = m.tokenizer!;
    const probe = async () => {
      await scoreTargets(m.net, tok, ["Angola is located in"], [
        tok.encode(" Antarctica", { addBos: false }),
      ]);
      await topNext(m.net, tok, ["Angola is located in"], 5);
    };
    await probe();
    const editor = new RomeEditor(m, hp, { stats, cacheRoot: cache });
    await editor.edit(REQ);
    await probe();
    const peaks = gpus.map((g) => g.memory().peakBytes);
    editor.dispose();
    stats.c.dispose();
    const plan = await planEdit(dir, hp, { devices: n, gpus: virtualLike(gpus[0], n) });
    return { peaks, plan, weights: m.net.weightBytes() };
  } finally {
    await m.dispose();
    for (const g of gpus) await g.destroy();
    await Deno.remove(cache, { recursive: true });
  }
}

for (const { name, config, layer } of MODELS) {
  Deno.test(`keg plan agrees with the measured peak within 5% (${name}, f32 / f16 / mixed, 1 and 2 devices)`, async () => {
    const dir = sharedPath(`models/${name}`);
    if (!dir) return;
    for (const precision of ["f32", "f16", "mixed"] as const) {
      for (const n of [1, 2]) {
        const { peaks, plan, weights } = await measured(dir, config, layer, precision, n);
        assert.equal(plan.devices.length, n);
        plan.devices.forEach((d, i) => {
          assert.equal(d.weights, weights[i], `${precision} ${n} devices: weights of ${d.label}`);
          const rel = Math.abs(d.peak - peaks[i]) / peaks[i];
          console.log(
            `${name} ${precision} ${n} device(s) ${d.label}: plan ${d.peak}, measured ${peaks[i]}`,
          );
          assert.ok(
            rel <= 0.05,
            `${name} ${precision} ${n} device(s), ${d.label}: planned ${d.peak} vs measured ${peaks[i]} (${
              (100 * rel).toFixed(2)
            } %)`,
          );
        });
      }
    }
  });
}

const CONFIGS = new URL("../fixtures/configs/", import.meta.url).pathname;

Deno.test("keg plan from config.json alone: weights match the parameter count; C adds two d_ff² f32 matrices", async () => {
  const hp = await loadHparams("configs/ROME/qwen2.5-7b.yaml");
  const raw = JSON.parse(await Deno.readTextFile(`${CONFIGS}qwen2.5-7b.json`));
  const c = parseConfig(raw);
  const f16 = await planEdit(`${CONFIGS}qwen2.5-7b.json`, hp, { precision: "f16", devices: 1 });
  // 7.62e9 parameters (Qwen2.5-7B's model card): linear weights in f16, norms and q/k/v biases in f32
  const h = c.hiddenSize, kv = c.numKvHeads * c.headDim, ff = c.intermediateSize, V = c.vocabSize;
  const lin = c.numLayers * (2 * h * h + 2 * h * kv + 3 * h * ff) + 2 * V * h;
  const small = c.numLayers * (h + 2 * kv + 2 * h) + h;
  assert.equal(f16.devices[0].weights, 2 * lin + 4 * small);
  assert.ok(f16.devices[0].peak > f16.devices[0].weights);
  assert.ok(f16.devices[0].peak < 1.3 * f16.devices[0].weights, `${f16.devices[0].peak}`);
  const mom2 = await planEdit(`${CONFIGS}qwen2.5-7b.json`, applyOverrides(hp, { mom2_adjustment: true }), {
    precision: "f16",
  });
  assert.equal(mom2.devices[0].statistics, 2 * 4 * ff * ff);
  // C is held from the start and its factor L is formed after v*: at least weights + C + L at the peak
  assert.ok(mom2.devices[0].peak >= f16.devices[0].weights + 2 * 4 * ff * ff);
  assert.ok(mom2.devices[0].peak > f16.devices[0].peak);
  // two devices: the weights split, each device's peak below the single-device one
  const two = await planEdit(`${CONFIGS}qwen2.5-7b.json`, hp, { precision: "f16", devices: 2 });
  assert.equal(two.devices[0].weights + two.devices[1].weights, f16.devices[0].weights);
  for (const d of two.devices) assert.ok(d.peak < f16.devices[0].peak);
});

Deno.test("keg plan GPT-J-6B (head_dim 256; n_inner null is 4·n_embd): weights match the parameter count", async () => {
  const hp = await loadHparams("configs/ROME/gpt-j-6B.yaml");
  const raw = JSON.parse(await Deno.readTextFile(`${CONFIGS}gpt-j-6b.json`));
  assert.equal(raw.n_inner, null);
  const c = parseConfig(raw);
  assert.equal(c.headDim, 256);
  assert.equal(c.intermediateSize, 4 * c.hiddenSize);
  const f16 = await planEdit(`${CONFIGS}gpt-j-6b.json`, hp, { precision: "f16", devices: 1 });
  // 6.05e9 parameters: q/k/v/out_proj without bias, fc_in / fc_out with, untied lm_head with a bias;
  // linear weights and the embedding in f16, biases and LayerNorms in f32
  const h = c.hiddenSize, ff = c.intermediateSize, V = c.vocabSize, L = c.numLayers;
  const lin = L * (4 * h * h + 2 * h * ff) + 2 * V * h;
  const small = L * (ff + h + 2 * h) + 2 * h + V;
  assert.equal(f16.devices[0].weights, 2 * lin + 4 * small);
  assert.ok(f16.devices[0].peak > f16.devices[0].weights);
  assert.ok(f16.devices[0].peak < 1.3 * f16.devices[0].weights, `${f16.devices[0].peak}`);
});

Deno.test("keg plan --devices auto: the fewest devices under the budget", async () => {
  const hp = await loadHparams("configs/ROME/llama3-8b.yaml");
  const model = `${CONFIGS}llama-3-8b.json`;
  const one = await planEdit(model, hp, { precision: "f32", devices: 1 });
  const split = await proposeSplit(model, hp, one.devices[0].peak * 0.6, { precision: "f32", numLayers: 32 });
  assert.ok(split && split.count === 2, `count ${split?.count}`);
  assert.equal(split.map.length, 32);
  for (const d of split.plan.devices) assert.ok(d.peak <= one.devices[0].peak * 0.6);
  assert.equal(await proposeSplit(model, hp, 1e6, { precision: "f32", numLayers: 32, maxDevices: 2 }), null);
});

Deno.test("virtual devices: nothing runs, buffers read what the host wrote, the pool and peak are the Gpu's", async () => {
  const [g] = openVirtual(1);
  const t = Tensor.from(g, Float32Array.of(1, 2, 3), [3], "f32");
  assert.deepEqual(await t.read(), Float32Array.of(1, 2, 3));
  const e = Tensor.empty(g, [4], "f32");
  assert.deepEqual(await e.read(), Float32Array.of(0.5, 0.5, 0.5, 0.5));
  const z = Tensor.zeros(g, [2], "f32");
  assert.deepEqual(await z.read(), Float32Array.of(0, 0));
  const big = Tensor.empty(g, [1 << 20, 1024], "f16"); // 2 GiB in 2 chunks, nothing allocated on the host
  assert.equal(big.chunks.length, 2);
  assert.equal(g.memory().peakBytes, 12 + 16 + 8 + 2 ** 31);
  big.dispose();
  const mem = g.memory(); // the large chunk is freed, the small one pooled (the Gpu's own rules)
  assert.equal(mem.liveBytes - mem.pooledBytes, 12 + 16 + 8);
  t.dispose(), e.dispose(), z.dispose();
});
