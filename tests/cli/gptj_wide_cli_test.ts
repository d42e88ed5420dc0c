import assert from "node:assert/strict";
import { Gpu } from "../../lib/gpu/device.ts";
import { greedyGenerate } from "../../lib/model/generate.ts";
import { loadModel } from "../../lib/model/load.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../../lib/model/safetensors.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { geluNewRef, layerNormRef } from "../../lib/testing/transformer_reference.ts";
import { randArray, sharedPath } from "../_util.ts";
import { keg, ROOT } from "./_keg.ts";

// GPT-J-6B has head_dim 256 (n_embd 4096 / 16 heads): a GPT-J-shaped random checkpoint with 2 heads of 256
// (and GPT-J's rotary_dim 64) runs forward against a float64 reference of the GPT-J forward (itself checked
// against gptj-tiny's reference logits), greedy KV-cache generation, and `keg generate` / `keg edit` (ROME
// with EasyEdit's gpt-j-6B values, mom2_adjustment false as shipped, on 2 layers) from the CLI:
// W'k + b = v*, no NaN.

const TOKENIZER = new URL("../fixtures/tokenizers/qwen2/", import.meta.url).pathname;

/** The GPT-J config.json fields the reference reads. */
interface GptjConfig {
  n_embd: number;
  n_head: number;
  n_layer: number;
  n_inner: number;
  rotary_dim: number;
  vocab_size: number;
  layer_norm_epsilon: number;
}

/** A float64 GPT-J forward (HF GPTJForCausalLM) of one unpadded sequence: logits [T, V]. */
function gptjReference(w: Map<string, Float32Array>, c: GptjConfig, ids: number[]): Float64Array {
  const T = ids.length, d = c.n_embd, H = c.n_head, hd = d / H, rd = c.rotary_dim, V = c.vocab_size;
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`reference: no tensor ${n}`);
    return t;
  };
  // y [T, out] = x [T, in] · Wᵀ (+ b), W stored [out, in] (torch Linear)
  const linear = (x: ArrayLike<number>, W: Float32Array, out: number, b?: Float32Array) => {
    const inp = W.length / out, y = new Float64Array(T * out);
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < out; o++) {
        let s = b ? b[o] : 0;
        for (let i = 0; i < inp; i++) s += x[t * inp + i] * W[o * inp + i];
        y[t * out + o] = s;
      }
    }
    return y;
  };
  // rotate_every_two on the first rotary_dim dims of each head, position t
  const rotate = (x: Float64Array) => {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < rd / 2; i++) {
          const a = t / Math.pow(10000, (2 * i) / rd), cos = Math.cos(a), sin = Math.sin(a);
          const o = t * d + h * hd + 2 * i, x0 = x[o], x1 = x[o + 1];
          x[o] = x0 * cos - x1 * sin;
          x[o + 1] = x1 * cos + x0 * sin;
        }
      }
    }
  };
  const wte = get("transformer.wte.weight");
  let x = new Float64Array(T * d);
  ids.forEach((id, t) => x.set(wte.subarray(id * d, (id + 1) * d), t * d));
  for (let l = 0; l < c.n_layer; l++) {
    const p = `transformer.h.${l}.`;
    const a = layerNormRef(x, get(`${p}ln_1.weight`), get(`${p}ln_1.bias`), T, d, c.layer_norm_epsilon);
    const q = linear(a, get(`${p}attn.q_proj.weight`), d), k = linear(a, get(`${p}attn.k_proj.weight`), d);
    const v = linear(a, get(`${p}attn.v_proj.weight`), d);
    rotate(q), rotate(k);
    const o = new Float64Array(T * d);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(t + 1);
        let m = -Infinity;
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[t * d + h * hd + e] * k[j * d + h * hd + e];
          s[j] = dot / Math.sqrt(hd);
          m = Math.max(m, s[j]);
        }
        let z = 0;
        for (let j = 0; j <= t; j++) z += s[j] = Math.exp(s[j] - m);
        for (let j = 0; j <= t; j++) {
          for (let e = 0; e < hd; e++) o[t * d + h * hd + e] += (s[j] / z) * v[j * d + h * hd + e];
        }
      }
    }
    const attn = linear(o, get(`${p}attn.out_proj.weight`), d);
    const hIn = geluNewRef(linear(a, get(`${p}mlp.fc_in.weight`), c.n_inner, get(`${p}mlp.fc_in.bias`)));
    const mlp = linear(hIn, get(`${p}mlp.fc_out.weight`), d, get(`${p}mlp.fc_out.bias`));
    x = x.map((xi, i) => xi + attn[i] + mlp[i]);
  }
  const f = layerNormRef(
    x,
    get("transformer.ln_f.weight"),
    get("transformer.ln_f.bias"),
    T,
    d,
    c.layer_norm_epsilon,
  );
  return linear(f, get("lm_head.weight"), V, get("lm_head.bias"));
}

async function readWeights(dir: string): Promise<Map<string, Float32Array>> {
  const f = await openSafetensors(`${dir}/model.safetensors`);
  const out = new Map<string, Float32Array>();
  try {
    for (const n of f.names()) out.set(n, (await f.readFloat(n, "f32")).data as Float32Array);
  } finally {
    await f.close();
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("the float64 GPT-J reference reproduces gptj-tiny's reference logits", async () => {
  const dir = sharedPath("models/fixtures/gptj-tiny");
  if (!dir) return;
  const cfg: GptjConfig = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
  const w = await readWeights(dir);
  let rows = 0;
  for (const c of ref.cases as { input_ids: number[][]; lengths: number[]; last_logits: number[][] }[]) {
    c.input_ids.forEach((row, b) => {
      const T = c.lengths[b];
      const logits = gptjReference(w, cfg, row.slice(0, T));
      const V = cfg.vocab_size;
      const d = maxAbsDiff(logits.subarray((T - 1) * V, T * V), c.last_logits[b]);
      assert.ok(d < 1e-9, `row ${b}: |Δ| ${d}`);
      rows++;
    });
  }
  assert.ok(rows >= 3);
});

/** GPT-J-shaped config with head_dim 256 (2 heads × 256) and GPT-J-6B's rotary_dim 64, tiny otherwise. */
const WIDE = {
  architectures: ["GPTJForCausalLM"],
  model_type: "gptj",
  activation_function: "gelu_new",
  n_embd: 512,
  n_head: 2,
  n_layer: 2,
  n_inner: 256,
  n_positions: 64,
  rotary_dim: 64,
  vocab_size: 256,
  layer_norm_epsilon: 1e-5,
  tie_word_embeddings: false,
  bos_token_id: 253,
  eos_token_id: 253,
  torch_dtype: "float32",
};

/** Writes a random checkpoint for {@link WIDE}: uniform weights (std ≈ 0.05·√3/√3), LayerNorms near 1. */
async function writeWide(dir: string): Promise<void> {
  const d = WIDE.n_embd, ff = WIDE.n_inner, V = WIDE.vocab_size;
  const ts: TensorToWrite[] = [];
  let seed = 300;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const data = randArray(shape.reduce((a, b) => a * b, 1), seed++, scale);
    if (offset) data.forEach((x, i) => data[i] = x + offset);
    ts.push({ name, dtype: "F32", shape, data });
  };
  add("transformer.wte.weight", [V, d], 1);
  for (let l = 0; l < WIDE.n_layer; l++) {
    const p = `transformer.h.${l}.`;
    add(`${p}ln_1.weight`, [d], 0.1, 1);
    add(`${p}ln_1.bias`, [d], 0.1);
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) add(`${p}attn.${n}.weight`, [d, d], 0.09);
    add(`${p}mlp.fc_in.weight`, [ff, d], 0.09);
    add(`${p}mlp.fc_in.bias`, [ff], 0.1);
    add(`${p}mlp.fc_out.weight`, [d, ff], 0.09);
    add(`${p}mlp.fc_out.bias`, [d], 0.1);
  }
  add("transformer.ln_f.weight", [d], 0.1, 1);
  add("transformer.ln_f.bias", [d], 0.1);
  add("lm_head.weight", [V, d], 0.09);
  add("lm_head.bias", [V], 0.1);
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(`${dir}/model.safetensors`, ts);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(WIDE, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(`${TOKENIZER}${f}`, `${dir}/${f}`);
  }
}

// as tests/model/forward_test.ts: f32 5e-5; f16 storage of weights and activations 3e-2; mixed 1e-2
const ATOL = { f32: 5e-5, f16: 3e-2, mixed: 1e-2 } as const;

Deno.test("GPT-J-shaped head_dim 256: forward vs float64, KV-cache generation, keg generate and a ROME edit", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "keg-gptj-wide-" });
  const gpu = await Gpu.open({ quiet: true });
  try {
    const model = `${tmp}/model`;
    await writeWide(model);
    const w = await readWeights(model);
    const prompt = [17, 200, 3, 45, 99, 120, 7, 64, 250, 31, 5];
    const V = WIDE.vocab_size, T = prompt.length;
    const want = gptjReference(w, WIDE, prompt);
    // the scores must be peaked enough for the attention to matter: logits vary across positions
    assert.ok(maxAbsDiff(want.subarray(0, V), want.subarray((T - 1) * V)) > 0.5);
    for (const precision of ["f32", "f16", "mixed"] as const) {
      const m = await loadModel(model, { precision, gpus: [gpu], quiet: true });
      try {
        assert.equal(m.config.headDim, 256);
        const r = await m.net.forward(padBatch([prompt]), { logitRows: "all" });
        const got = await r.logits.read();
        r.logits.dispose();
        const d = maxAbsDiff(got, want);
        assert.ok(d <= ATOL[precision], `${precision}: max |Δlogit| ${d} > ${ATOL[precision]}`);
        assert.ok(got.every(Number.isFinite));
        if (precision !== "f32") continue;
        // greedy decoding through the KV cache = greedy on the float64 reference, recomputed each step
        const ids = [...prompt], refNew: number[] = [];
        for (let s = 0; s < 6; s++) {
          const l = gptjReference(w, WIDE, ids).subarray((ids.length - 1) * V);
          let best = 0;
          for (let i = 1; i < V; i++) if (l[i] > l[best]) best = i;
          refNew.push(best), ids.push(best);
        }
        const gen = await greedyGenerate(m.net, prompt, { maxNewTokens: 6 });
        assert.deepEqual(gen, refNew, "KV-cache greedy tokens vs the float64 reference");
        assert.deepEqual(await greedyGenerate(m.net, prompt, { maxNewTokens: 6, kvCache: false }), gen);
      } finally {
        await m.dispose();
      }
    }

    const gen = await keg([
      "generate",
      "--model",
      model,
      "--prompt",
      "Angola is located in",
      "--max-new",
      "3",
    ]);
    assert.equal(gen.code, 0, gen.err);
    assert.ok(gen.out.startsWith("Angola is located in"), gen.out);

    const shipped = await Deno.readTextFile(`${ROOT}configs/ROME/gpt-j-6B.yaml`);
    await Deno.writeTextFile(
      `${tmp}/rome.yaml`,
      shipped.replace(/^context_template_length_params: .*$/m, "context_template_length_params: [[4, 3]]"),
    );
    const r = await keg([
      "edit",
      "--hparams",
      `${tmp}/rome.yaml`,
      "--model",
      model,
      "--set",
      "layers=[0],v_loss_layer=1,v_num_grad_steps=4",
      "--prompt",
      "{} is located in",
      "--subject",
      "Angola",
      "--target",
      "Antarctica",
      "--json",
      `${tmp}/result.json`,
    ], { KEG_CACHE: `${tmp}/cache` });
    assert.equal(r.code, 0, r.err);
    const [res] = JSON.parse(await Deno.readTextFile(`${tmp}/result.json`));
    assert.equal(res.weightName, "transformer.h.0.mlp.fc_out.weight");
    assert.deepEqual(res.fallbacks, [], "no NaN/inf fallback");
    assert.ok(res.vSteps.length >= 1 && res.vSteps.every((s: { nll: number }) => Number.isFinite(s.nll)));
    assert.ok(Number.isFinite(res.dWRel) && res.dWRel > 0, `dWRel ${res.dWRel}`);
    assert.ok(res.kvResidual < 1e-5, `W'k + b = v*: residual ${res.kvResidual}`);
    assert.match(r.out, /W'k \+ b = v\*: relative residual/);
  } finally {
    await gpu.destroy();
    await Deno.remove(tmp, { recursive: true });
  }
});
