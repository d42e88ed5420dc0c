import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/tensor.ts";
import {
  byteTokenizer,
  fillRandom,
  hashUniform,
  RANDOM_7B_CONFIGS,
  randomCovariance,
  randomModel,
  tensorSeed,
} from "../../lib/testing/random_model.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { parseConfig } from "../../lib/model/config.ts";
import { applyOverrides, loadHparams } from "../../lib/edit/hparams.ts";
import { RomeEditor } from "../../lib/edit/rome.ts";
import { assertClose, testGpu } from "../_util.ts";

function reference(seed: number, scale: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = hashUniform(seed, i, scale);
  return out;
}

Deno.test("fillRandom: bit-exact with the TS hash in f32, deterministic, seeds differ, in range, moments", async () => {
  const gpu = await testGpu();
  const n = 100_000, scale = 0.5;
  const t = Tensor.empty(gpu, [n], "f32");
  await fillRandom(t, 7, scale);
  const a = await t.read();
  // the [-1, 1) value is exact in f32 and ·scale is one correctly rounded multiply: no tolerance
  assert.deepEqual(a, reference(7, scale, n));
  await fillRandom(t, 7, scale);
  assert.deepEqual(await t.read(), a, "same seed, same values");
  await fillRandom(t, 8, scale);
  const b = await t.read();
  let same = 0;
  for (let i = 0; i < n; i++) if (a[i] === b[i]) same++;
  assert.ok(same < 20, `seeds 7 and 8 agree at ${same} of ${n} positions`);
  let sum = 0, sq = 0, lo = Infinity, hi = -Infinity;
  for (const v of a) {
    sum += v;
    sq += v * v;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  assert.ok(lo >= -scale && hi < scale, `range [${lo}, ${hi}] outside [-${scale}, ${scale})`);
  assert.ok(lo < -0.99 * scale && hi > 0.99 * scale, "values span the range");
  // uniform on [-s, s): mean 0 with σ_mean = s/√(3n); E[x²] = s²/3 with σ = s²·√(4/45/n). Allow 5σ.
  const mean = sum / n, m2 = sq / n;
  assert.ok(Math.abs(mean) < 5 * scale / Math.sqrt(3 * n), `mean ${mean}`);
  assert.ok(
    Math.abs(m2 - scale * scale / 3) < 5 * scale * scale * Math.sqrt(4 / 45 / n),
    `second moment ${m2} vs ${scale * scale / 3}`,
  );
  t.dispose();
});

Deno.test("fillRandom: f16 storage, row-chunked tensors and size-1 edges", async () => {
  // [37, 101]: odd row size, 37 rows; 8 rows per chunk in f32 (3232 B), an even count in f16
  const gpu = await testGpu({ maxBindingBytes: 101 * 4 * 8 });
  const rows = 37, cols = 101, scale = 0.03, seed = 12345;
  const ref = reference(seed, scale, rows * cols);
  const f32 = Tensor.empty(gpu, [rows, cols], "f32");
  assert.ok(f32.chunks.length > 1, "f32 tensor is chunked");
  await fillRandom(f32, seed, scale);
  assert.deepEqual(await f32.read(), ref, "chunking does not change the values");
  if (gpu.f16) {
    const f16 = Tensor.empty(gpu, [rows, cols], "f16");
    assert.ok(f16.chunks.length > 1, "f16 tensor is chunked");
    await fillRandom(f16, seed, scale);
    // f32 → f16 narrowing: within one f16 ulp (2^-10 relative; the rounding mode is the driver's), and
    // |x| stays below scale rounded up to f16
    const got = await f16.read();
    assertClose(got, ref, 2 ** -24, 2 ** -10, "f16 fill");
    assert.ok(got.every((v) => Math.abs(v) <= scale * (1 + 2 ** -10)));
    f16.dispose();
  }
  const one = Tensor.empty(gpu, [1], "f32");
  await fillRandom(one, 3, 2);
  assert.deepEqual(await one.read(), reference(3, 2, 1));
  one.dispose();
  f32.dispose();
  await gpu.destroy();
});

Deno.test("randomCovariance: XᵀX/n + ridge·I from the hashed keys", async () => {
  const gpu = await testGpu();
  const d = 45, n = 70;
  const c = await randomCovariance(gpu, d, { seed: 4, samples: n, ridge: 0.5 });
  const x = reference(tensorSeed(4, "covariance.0"), 1, n * d);
  const want = new Float32Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += x[k * d + i] * x[k * d + j];
      want[i * d + j] = s / n + (i === j ? 0.5 : 0);
    }
  }
  // an f32 sum of n products |x_i·x_j| < 1 errs by ≤ n·ε·Σ|terms| ≤ n²·ε, i.e. ≤ n·ε after /n (ε = 2^-24);
  // doubled for the rounding of the scale and of the diagonal add
  assertClose(await c.read(), want, 2 * n * 2 ** -24, 0, "C");
  c.dispose();
});

Deno.test("byteTokenizer: bytes ↔ ids, specials, out-of-range ids decode to text", () => {
  const tok = byteTokenizer(300);
  const ids = tok.encode("Paris é");
  assert.deepEqual(ids, [1, ..."Paris ".split("").map((c) => c.charCodeAt(0) + 3), 0xc3 + 3, 0xa9 + 3]);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "Paris é");
  assert.equal(tok.decode(ids), "<s>Paris é");
  assert.deepEqual(tok.encode("a", { addBos: false }), [100]);
  assert.equal(tok.decode([259, 260]).length, 2);
  assert.equal(tok.idToToken(3 + 0x41), "<0x41>");
  assert.equal(tok.tokenToId("<0x41>"), 3 + 0x41);
  assert.equal(tok.tokenToId("</s>"), 2);
  assert.equal(tok.idToToken(300), undefined);
  assert.throws(() => byteTokenizer(100), /259/);
});

const TINY = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 300,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 256,
};

Deno.test("randomModel: tiny Llama forward is finite and seeded; R-ROME edits it and restore() is exact", async () => {
  const tmp = await Deno.makeTempDir();
  const gpu = await testGpu();
  const precision = gpu.f16 ? "f16" : "f32";
  // the embedding (300·64·2 B) and the down projection are row-chunked at this binding cap
  const model = await randomModel(TINY, { precision, seed: 1, maxBindingBytes: 16384, quiet: true });
  const tok = model.tokenizer!;
  const probe = padBatch([tok.encode("The Eiffel Tower is in"), tok.encode("Angola")]);
  const logits = async () => {
    const r = await model.net.forward(probe, { logitRows: "last" });
    const out = await r.logits.read();
    r.logits.dispose();
    return out;
  };
  try {
    assert.ok(model.fingerprint.startsWith("random:"));
    assert.ok(model.net.embed.chunks.length > 1, "embedding is chunked");
    assert.equal(model.net.blocks[1].mlpOut.w.dtype, gpu.f16 ? "f16" : "f32");
    const before = await logits();
    assert.equal(before.length, 2 * 300);
    assert.ok(before.every(Number.isFinite), "finite logits");
    // the same config and seed give the same model; another seed another one
    const again = await randomModel(TINY, { precision, seed: 1, gpus: model.net.devices, quiet: true });
    const other = await randomModel(TINY, { precision, seed: 2, gpus: model.net.devices, quiet: true });
    assert.equal(again.fingerprint, model.fingerprint);
    assert.notEqual(other.fingerprint, model.fingerprint);
    const w = await model.net.blocks[1].mlpOut.w.read();
    assert.deepEqual(await again.net.blocks[1].mlpOut.w.read(), w);
    assert.notDeepEqual(await other.net.blocks[1].mlpOut.w.read(), w);
    await again.dispose();
    await other.dispose();
    // the "checkpoint" regenerates the unedited weight
    const ck = await model.checkpoint.readFloat("model.layers.1.mlp.down_proj.weight", "f32");
    assert.deepEqual(ck.shape, [64, 172]);
    assert.deepEqual(ck.data, w);
    await assert.rejects(() => model.checkpoint.read("model.norm.weight"), /no checkpoint/);

    const hp = applyOverrides(await loadHparams("configs/R-ROME/llama-2-7b.yaml"), {
      layers: [1],
      v_loss_layer: 1,
      v_num_grad_steps: 2,
      mom2_adjustment: false,
      context_template_length_params: [[4, 2]],
    });
    const editor = new RomeEditor(model, hp, { cacheRoot: tmp });
    const { report: e } = await editor.edit({
      prompt: "{} is located in",
      subject: "Angola",
      targetNew: "Oz",
    });
    assert.equal(e.vSteps.length, 2);
    assert.ok(Number.isFinite(e.dWRel) && e.dWRel > 0, `dWRel ${e.dWRel}`);
    for (const k of ["templates", "kStar", "vStar", "solve", "update", "total"] as const) {
      assert.ok(e.timings[k] >= 0, k);
    }
    const edited = await logits();
    assert.notDeepEqual(edited, before, "the edit changes the model");
    await editor.restore();
    assert.deepEqual(await logits(), before, "restore() is bit-exact");
    editor.dispose();
  } finally {
    await model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("RANDOM_7B_CONFIGS: Llama-2-7B, Llama-3-8B and Qwen2.5-7B shapes and parameter counts", () => {
  const published: Record<string, number> = {
    "llama-2-7b": 6.74e9,
    "llama-3-8b": 8.03e9,
    "qwen2.5-7b": 7.62e9,
  };
  for (const [name, raw] of Object.entries(RANDOM_7B_CONFIGS)) {
    const c = parseConfig(raw, name);
    const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, h = c.hiddenSize;
    const bias = c.attentionBias ? q + 2 * kv : 0;
    const layer = 2 * h * q + 2 * h * kv + bias + 3 * h * c.intermediateSize + 2 * h;
    const params = c.numLayers * layer + (c.tieWordEmbeddings ? 1 : 2) * c.vocabSize * h + h;
    assert.ok(Math.abs(params / published[name] - 1) < 5e-3, `${name}: ${params} parameters`);
  }
  const l3 = parseConfig(RANDOM_7B_CONFIGS["llama-3-8b"]);
  assert.deepEqual([l3.vocabSize, l3.intermediateSize, l3.numKvHeads], [128256, 14336, 8]);
  const q = parseConfig(RANDOM_7B_CONFIGS["qwen2.5-7b"]);
  assert.deepEqual([q.vocabSize, q.intermediateSize, q.numKvHeads, q.headDim], [152064, 18944, 4, 128]);
  assert.deepEqual([q.attentionBias, q.attentionOutBias, q.layerWindows], [true, false, undefined]);
});

Deno.test("randomModel: Qwen2 (q/k/v biases) and Qwen3 (head_dim ≠ hidden/heads, q/k norms) run and edit", async () => {
  const gpu = await testGpu();
  const tiny = { ...TINY, num_key_value_heads: 2 };
  const cache = await Deno.makeTempDir(); // the sampled templates' cache
  for (const cfg of [{ ...tiny, model_type: "qwen2" }, { ...tiny, model_type: "qwen3", head_dim: 32 }]) {
    const model = await randomModel(cfg, { gpus: [gpu], seed: 3, quiet: true });
    try {
      const blk = model.net.blocks[0];
      if (cfg.model_type === "qwen3") {
        assert.deepEqual(blk.q.w.shape, [128, 64]);
        assert.deepEqual(blk.qNorm?.w.shape, [32]);
        assert.deepEqual(blk.kNorm?.w.shape, [32]);
      } else {
        assert.deepEqual(blk.q.b?.shape, [64]);
        assert.deepEqual(blk.k.b?.shape, [32]);
        assert.equal(blk.o.b, undefined);
      }
      const tok = model.tokenizer!;
      const r = await model.net.forward(padBatch([tok.encode("Angola is in")]), { logitRows: "last" });
      assert.ok((await r.logits.read()).every(Number.isFinite));
      r.logits.dispose();
      const hp = applyOverrides(await loadHparams("configs/R-ROME/qwen2.5-7b.yaml"), {
        layers: [0],
        v_loss_layer: 1,
        v_num_grad_steps: 2,
        context_template_length_params: [[4, 1]],
      });
      const editor = new RomeEditor(model, hp, { cacheRoot: cache });
      const e = await editor.edit({ prompt: "{} is located in", subject: "Angola", targetNew: "Oz" });
      const rep = e.report;
      assert.ok(Number.isFinite(rep.dWRel) && rep.dWRel > 0 && rep.fallbacks.length === 0, cfg.model_type);
      editor.dispose();
    } finally {
      await model.dispose();
    }
  }
  await Deno.remove(cache, { recursive: true });
});
