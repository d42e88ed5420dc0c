import assert from "node:assert/strict";
import { Gpu } from "../../lib/gpu/device.ts";
import { ConfigError, loadConfig, parseConfig } from "../../lib/model/config.ts";
import { loadModel } from "../../lib/model/load.ts";
import { ShapeError } from "../../lib/model/shapes.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../../lib/model/safetensors.ts";
import { padBatch, type Transformer } from "../../lib/model/transformer.ts";
import { backwardFromLogits, disposeTaped, forwardWithTape } from "../../lib/model/backward.ts";
import { Tensor } from "../../lib/gpu/tensor.ts";
import { axpy, cast } from "../../lib/ops/elementwise.ts";
import { randArray, sharedPath } from "../_util.ts";

// Llama-3.x, Qwen2/2.5 and Qwen3: configs, malformed configs and checkpoints, per-layer sliding windows,
// and 2 devices bit-identical to 1 in every precision. (Forward vs the float64 references, backward vs
// finite differences and KV-cache generation of these fixtures are in forward_test, backward_test and
// generate_test.)

const NEW = ["llama3-tiny-rope-scaled", "llama3.2-tiny-tied", "qwen2-tiny", "qwen2-tiny-tied", "qwen3-tiny"];

let gpus: Promise<Gpu[]> | null = null;
const devices = () => gpus ??= Gpu.openMany(2, { quiet: true });

function releaseWeights(net: Transformer): void {
  const seen = new Set<Tensor>();
  const d = (t?: Tensor) => t && !seen.has(t) && (seen.add(t), t.dispose());
  d(net.embed);
  for (const b of net.blocks) {
    for (const n of [b.ln1, b.ln2, b.qNorm, b.kNorm]) d(n?.w), d(n?.b);
    for (const l of [b.q, b.k, b.v, b.o, b.mlpIn, b.mlpGate, b.mlpOut]) d(l?.w), d(l?.b);
  }
  d(net.finalNorm.w), d(net.lmHead.w);
}

Deno.test("new fixture configs: rope scaling, tied heads, q/k/v biases without o bias, qwen3 head_dim and q/k norms", async () => {
  const dirs = NEW.map((f) => sharedPath(`models/fixtures/${f}`));
  if (dirs.some((d) => !d)) return;
  const [l3, l32, q2, q2t, q3] = await Promise.all(dirs.map((d) => loadConfig(d!)));
  assert.deepEqual(l3.rotary, {
    dim: 16,
    theta: 500000,
    interleaved: false,
    scaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 },
  });
  assert.equal(l3.tieWordEmbeddings, false);
  assert.equal(l32.rotary?.scaling?.factor, 32);
  assert.equal(l32.tieWordEmbeddings, true);
  for (const q of [q2, q2t]) {
    assert.equal(q.family, "llama");
    assert.equal(q.attentionBias, true);
    assert.equal(q.attentionOutBias, false);
    assert.equal(q.slidingWindow, null, "use_sliding_window false: full attention");
    assert.equal(q.layerWindows, undefined);
    assert.equal(q.rotary?.theta, 1e6);
  }
  assert.equal(q2.headDim, 16);
  assert.equal(q2t.headDim, 8);
  assert.equal(q3.headDim, 32);
  assert.equal(q3.qkNorm, true);
  assert.equal(q3.attentionBias, false);
  assert.equal(q3.attentionOutBias, undefined);
  assert.equal(q3.tieWordEmbeddings, true);
  // Qwen3Config's head_dim default is 128, not hidden/heads
  assert.equal(parseConfig({ ...q3.raw, head_dim: undefined }).headDim, 128);
});

Deno.test("qwen sliding windows: only with use_sliding_window, on layers ≥ max_window_layers or per layer_types", () => {
  const base = {
    model_type: "qwen2",
    vocab_size: 256,
    hidden_size: 64,
    intermediate_size: 80,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    sliding_window: 8,
    max_window_layers: 2,
  };
  assert.equal(parseConfig(base).layerWindows, undefined);
  const w = parseConfig({ ...base, use_sliding_window: true });
  assert.deepEqual(w.layerWindows, [null, null, 8, 8]);
  assert.equal(w.slidingWindow, 8);
  assert.deepEqual(
    parseConfig({
      ...base,
      use_sliding_window: true,
      layer_types: ["sliding_attention", "full_attention", "full_attention", "sliding_attention"],
    }).layerWindows,
    [8, null, null, 8],
  );
  // every layer full: no per-layer windows at all
  assert.equal(
    parseConfig({ ...base, use_sliding_window: true, max_window_layers: 4 }).layerWindows,
    undefined,
  );
  const err = (raw: Record<string, unknown>, field: string, part: string) =>
    assert.throws(() => parseConfig(raw, "/m/config.json"), (e: unknown) => {
      assert.ok(e instanceof ConfigError && e.field === field, String(e));
      assert.ok(e.message.startsWith("/m/config.json: ") && e.message.includes(part), e.message);
      return true;
    });
  err({ ...base, use_sliding_window: true, layer_types: ["full_attention"] }, "layer_types", "4 entries");
  err({ ...base, use_sliding_window: true, layer_types: ["a", "b", "c", "d"] }, "layer_types", '"a"');
  err({ ...base, use_sliding_window: true, max_window_layers: -1 }, "max_window_layers", "non-negative");
  err({ ...base, use_sliding_window: "yes" }, "use_sliding_window", "true or false");
});

Deno.test("malformed rope_scaling: unknown types name the type and file; bad llama3 fields name the field", () => {
  const base = {
    model_type: "llama",
    vocab_size: 256,
    hidden_size: 64,
    intermediate_size: 80,
    num_hidden_layers: 2,
    num_attention_heads: 4,
  };
  const l3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 };
  const cases: [unknown, string, string][] = [
    [{ rope_type: "yarn", factor: 4 }, "rope_scaling", 'rope type "yarn" is not supported'],
    [{ type: "dynamic", factor: 2 }, "rope_scaling", '"dynamic"'],
    [{ rope_type: "longrope" }, "rope_scaling", "supported: default, linear, llama3"],
    [{ factor: 2 }, "rope_scaling", "rope type null"],
    ["llama3", "rope_scaling", "must be an object"],
    [{ type: "linear" }, "rope_scaling.factor", "positive number"],
    [{ ...l3 }, "rope_scaling.original_max_position_embeddings", "positive number"],
    [
      { ...l3, original_max_position_embeddings: 64.5 },
      "rope_scaling.original_max_position_embeddings",
      "integer",
    ],
    [
      { ...l3, original_max_position_embeddings: 64, high_freq_factor: 1 },
      "rope_scaling.high_freq_factor",
      "exceed",
    ],
    [{ ...l3, original_max_position_embeddings: 64, factor: -1 }, "rope_scaling.factor", "got -1"],
  ];
  for (const [rs, field, part] of cases) {
    for (const model_type of ["llama", "qwen2", "qwen3"]) {
      assert.throws(
        () => parseConfig({ ...base, model_type, rope_scaling: rs }, "/x/config.json"),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.field, field, e.message);
          assert.ok(
            e.message.startsWith(`/x/config.json: ${field}: `) && e.message.includes(part),
            e.message,
          );
          return true;
        },
      );
    }
  }
  assert.equal(parseConfig({ ...base, rope_scaling: { rope_type: "default" } }).rotary?.scaling, undefined);
});

/** A copy of a fixture dir with a modified config and/or tensors. */
async function variant(
  src: string,
  cfg: (c: Record<string, unknown>) => Record<string, unknown>,
  tensors?: (t: TensorToWrite[]) => TensorToWrite[],
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "keg-family-" });
  const raw = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg(raw)));
  if (!tensors) {
    await Deno.copyFile(`${src}/model.safetensors`, `${dir}/model.safetensors`);
    return dir;
  }
  const f = await openSafetensors(`${src}/model.safetensors`);
  const list: TensorToWrite[] = [];
  for (const name of f.names()) {
    const t = await f.readFloat(name, "f32");
    list.push({ name, dtype: "F32", shape: t.shape, data: t.data });
  }
  f.close();
  await writeSafetensors(`${dir}/model.safetensors`, tensors(list));
  return dir;
}

async function loadError(dir: string): Promise<Error> {
  const gs = (await devices()).slice(0, 1);
  const e = await loadModel(dir, { gpus: gs, quiet: true }).then(async (m) => {
    releaseWeights(m.net);
    await m.dispose();
    return null;
  }, (e) => e);
  assert.ok(e instanceof Error, "expected the load to fail");
  return e;
}

Deno.test("malformed checkpoints: head_dim inconsistent with the weights, missing q_norm, wrong bias length", async () => {
  const q3 = sharedPath("models/fixtures/qwen3-tiny"), q2 = sharedPath("models/fixtures/qwen2-tiny");
  if (!q3 || !q2) return;
  const dirs: string[] = [];
  try {
    // head_dim 16 in config.json, but q_proj is [128, 64] (4 heads × 32)
    let dir = await variant(q3, (c) => ({ ...c, head_dim: 16 }));
    dirs.push(dir);
    let e = await loadError(dir);
    // (lib/model/shapes.ts: the tensor, its file, both shapes, the config file and fields)
    assert.ok(e.message.startsWith(dir), e.message);
    assert.ok(e.message.includes("model.layers.0.self_attn.q_proj.weight has shape [128, 64]"), e.message);
    assert.ok(e.message.includes("config.json implies [64, 64]"), e.message);
    assert.ok(e.message.includes("head_dim"), e.message);
    // qwen3 without its q_norm / k_norm tensors
    dir = await variant(q3, (c) => c, (ts) => ts.filter((t) => !t.name.includes("_norm")));
    dirs.push(dir);
    e = await loadError(dir);
    assert.ok(e.message.includes("a qwen3 model needs"), e.message);
    assert.ok(e.message.includes("model.layers.0.self_attn.q_norm.weight"), e.message);
    assert.ok(e.message.startsWith(dir), e.message);
    // a q_norm of the wrong length (the Llama-like extras, same check)
    dir = await variant(
      q3,
      (c) => c,
      (ts) =>
        ts.map((t) =>
          t.name === "model.layers.1.self_attn.q_norm.weight"
            ? { ...t, shape: [16], data: (t.data as Float32Array).slice(0, 16) }
            : t
        ),
    );
    dirs.push(dir);
    e = await loadError(dir);
    assert.ok(e instanceof ShapeError, String(e));
    assert.ok(e.message.includes("model.layers.1.self_attn.q_norm.weight has shape [16]"), e.message);
    assert.ok(e.message.includes(`${dir}/config.json implies [32] (head_dim 32)`), e.message);
    // a v_proj bias of the wrong length
    dir = await variant(
      q2,
      (c) => c,
      (ts) =>
        ts.map((t) =>
          t.name === "model.layers.1.self_attn.v_proj.bias"
            ? { ...t, shape: [16], data: (t.data as Float32Array).slice(0, 16) }
            : t
        ),
    );
    dirs.push(dir);
    e = await loadError(dir);
    assert.ok(e.message.includes("model.layers.1.self_attn.v_proj.bias has shape [16]"), e.message);
    assert.ok(e.message.includes("implies [32]"), e.message);
    assert.ok(e.message.includes("num_key_value_heads"), e.message);
    // qwen2 biases are hard-coded: a checkpoint without them is refused by name
    dir = await variant(q2, (c) => c, (ts) => ts.filter((t) => !t.name.endsWith("k_proj.bias")));
    dirs.push(dir);
    e = await loadError(dir);
    assert.ok(e.message.includes("model.layers.0.self_attn.k_proj.bias"), e.message);
  } finally {
    for (const d of dirs) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("qwen2 per-layer sliding window: applied on the windowed layers only; backward matches finite differences", async () => {
  const src = sharedPath("models/fixtures/qwen2-tiny");
  if (!src) return;
  const gs = (await devices()).slice(0, 1);
  // 2 layers; window 4 on layer 1 only (max_window_layers 1)
  const windowed = await variant(
    src,
    (c) => ({ ...c, use_sliding_window: true, sliding_window: 4, max_window_layers: 1 }),
  );
  const unused = await variant(
    src,
    (c) => ({ ...c, use_sliding_window: true, sliding_window: 4, max_window_layers: 2 }),
  );
  const plain = await loadModel(src, { gpus: gs, quiet: true });
  const w = await loadModel(windowed, { gpus: gs, quiet: true });
  const u = await loadModel(unused, { gpus: gs, quiet: true });
  try {
    assert.deepEqual(w.config.layerWindows, [null, 4]);
    const ids = [5, 17, 99, 3, 250, 41, 7, 88, 12, 60, 200, 9];
    const b = padBatch([ids]);
    const V = plain.config.vocabSize;
    const logits = async (m: typeof plain) => {
      const r = await m.net.forward(b, { logitRows: "all" });
      const l = await r.logits.read();
      r.logits.dispose();
      return l;
    };
    const [lp, lw, lu] = [await logits(plain), await logits(w), await logits(u)];
    assert.deepEqual(lu, lp, "windows on no layer: identical to full attention");
    // positions < 4 see all their keys anyway: identical; later positions differ
    assert.deepEqual(lw.subarray(0, 4 * V), lp.subarray(0, 4 * V), "positions inside the window");
    let d = 0;
    for (let i = 4 * V; i < lw.length; i++) d = Math.max(d, Math.abs(lw[i] - lp[i]));
    assert.ok(d > 1e-2, `window on layer 1 must change later positions (max |Δ| ${d})`);
    // layer 0 is not windowed: its output is bit-identical
    const x0p = await plain.net.prefix(b, 0), x0w = await w.net.prefix(b, 0);
    assert.deepEqual(await x0w.x.read(), await x0p.x.read(), "layer 0 unchanged");
    x0p.x.dispose();
    // backward through the windowed layer 1 vs central finite differences
    const T = b.seq, dm = w.config.hiddenSize;
    const wt = randArray(T * V, 3), dir = randArray(T * dm, 4);
    const loss = async (shift: number) => {
      const xs = await cast(x0w.x, "f32");
      const ut = Tensor.from(xs.gpu, dir.map((v) => v * shift), [T, dm], "f32");
      await axpy(xs, 1, ut);
      ut.dispose();
      const t = await forwardWithTape(w.net, xs, 1, b);
      const l = await t.logits.read();
      disposeTaped(t);
      return l.reduce((s, v, i) => s + v * wt[i], 0);
    };
    const taped = await forwardWithTape(w.net, await cast(x0w.x, "f32"), 1, b);
    const dx = await (await backwardFromLogits(w.net, taped, Tensor.from(gs[0], wt, [T, V], "f32"), b))
      .read();
    const analytic = dx.reduce((s, v, i) => s + v * dir[i], 0);
    const h = 1e-2;
    const numeric = (await loss(h) - await loss(-h)) / (2 * h);
    assert.ok(Math.abs(analytic - numeric) <= 2e-3 * Math.abs(numeric) + 1e-3, `${analytic} vs ${numeric}`);
    x0w.x.dispose();
  } finally {
    for (const m of [plain, w, u]) releaseWeights(m.net), await m.dispose();
    for (const d of [windowed, unused]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("new fixtures: two devices give bit-identical logits to one in f32, f16 and mixed", async () => {
  const gs = await devices();
  for (const fixture of NEW) {
    const dir = sharedPath(`models/fixtures/${fixture}`);
    if (!dir) return;
    const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
    const c = ref.cases.find((c: { name: string }) => c.name === "batch_right_padded");
    const batch = padBatch(c.input_ids.map((row: number[], b: number) => row.slice(0, c.lengths[b])));
    for (const precision of ["f32", "f16", "mixed"] as const) {
      const out: Float32Array[] = [];
      for (const n of [1, 2]) {
        const m = await loadModel(dir, { precision, gpus: gs.slice(0, n), quiet: true });
        assert.equal(new Set(m.net.layerDevice).size, n);
        const r = await m.net.forward(batch, { logitRows: "all" });
        out.push(await r.logits.read());
        r.logits.dispose();
        releaseWeights(m.net);
        await m.dispose();
      }
      assert.deepEqual(out[1], out[0], `${fixture} ${precision}: 2 devices vs 1`);
    }
  }
});

Deno.test("families-test teardown: release the shared devices", async () => {
  if (gpus) { for (const g of await gpus) await g.destroy(); }
});
