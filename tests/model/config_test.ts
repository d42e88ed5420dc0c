import assert from "node:assert/strict";
import { ConfigError, loadConfig, type ModelConfig, parseConfig } from "../../lib/model/config.ts";
import { sharedPath } from "../_util.ts";

/** The normalised fields (everything but `raw`). */
function fields(cfg: ModelConfig): Omit<ModelConfig, "raw"> {
  const { raw: _raw, ...rest } = cfg;
  return rest;
}

function expectError(fn: () => unknown, field: string | undefined, ...parts: string[]): ConfigError {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
  assert.equal(err.field, field);
  if (field) assert.ok(err.message.includes(`${field}: `), err.message);
  for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" lacks "${p}"`);
  return err;
}

const GPT2 = {
  model_type: "gpt2",
  vocab_size: 512,
  n_embd: 64,
  n_layer: 2,
  n_head: 4,
  n_positions: 64,
  n_inner: null,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
};
const LLAMA = {
  model_type: "llama",
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 3,
  num_attention_heads: 8,
  max_position_embeddings: 256,
};

Deno.test("fixture configs normalise as fixtures/README.md describes them", async () => {
  const want: Record<string, Omit<ModelConfig, "raw">> = {
    "gpt2-tiny": {
      modelType: "gpt2",
      family: "gpt2",
      vocabSize: 512,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 256, // n_inner null → 4·n_embd
      maxPositions: 64,
      normType: "layernorm",
      normEps: 1e-5,
      activation: "gelu_new",
      rotary: null,
      slidingWindow: null,
      tieWordEmbeddings: true,
      lmHeadBias: false,
      attentionBias: true,
      mlpBias: true,
      parallelResidual: false,
      bosTokenId: 511,
      eosTokenId: 511,
      eosTokenIds: [511],
      padTokenId: null,
      torchDtype: "float32",
    },
    "gptj-tiny": {
      modelType: "gptj",
      family: "gptj",
      vocabSize: 512,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 128,
      maxPositions: 128,
      normType: "layernorm",
      normEps: 1e-5,
      activation: "gelu_new",
      rotary: { dim: 8, theta: 10000, interleaved: true },
      slidingWindow: null,
      tieWordEmbeddings: false,
      lmHeadBias: true,
      attentionBias: false,
      mlpBias: true,
      parallelResidual: true,
      bosTokenId: 511,
      eosTokenId: 511,
      eosTokenIds: [511],
      padTokenId: null,
      torchDtype: "float32",
    },
    "llama-tiny-gqa": {
      modelType: "llama",
      family: "llama",
      vocabSize: 512,
      hiddenSize: 64,
      numLayers: 3,
      numHeads: 8,
      numKvHeads: 2,
      headDim: 8,
      intermediateSize: 160,
      maxPositions: 256,
      normType: "rmsnorm",
      normEps: 1e-5,
      activation: "silu",
      rotary: { dim: 8, theta: 500000, interleaved: false },
      slidingWindow: null,
      tieWordEmbeddings: false,
      lmHeadBias: false,
      attentionBias: false,
      mlpBias: false,
      parallelResidual: false,
      bosTokenId: 1,
      eosTokenId: 2,
      eosTokenIds: [2],
      padTokenId: null,
      torchDtype: "float32",
    },
    "mistral-tiny": {
      modelType: "mistral",
      family: "llama",
      vocabSize: 512,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      intermediateSize: 172,
      maxPositions: 256,
      normType: "rmsnorm",
      normEps: 1e-6,
      activation: "silu",
      rotary: { dim: 16, theta: 10000, interleaved: false },
      slidingWindow: 8,
      tieWordEmbeddings: false,
      lmHeadBias: false,
      attentionBias: false,
      mlpBias: false,
      parallelResidual: false,
      bosTokenId: 1,
      eosTokenId: 2,
      eosTokenIds: [2],
      padTokenId: null,
      torchDtype: "float32",
    },
  };
  for (const [name, expected] of Object.entries(want)) {
    const dir = sharedPath(`models/fixtures/${name}`);
    if (!dir) continue;
    const cfg = await loadConfig(dir);
    assert.deepEqual(fields(cfg), expected, name);
    assert.equal(cfg.raw.model_type, expected.modelType);
  }
  for (const [name, dtype] of [["gpt2-tiny-f16", "float16"], ["gpt2-tiny-bf16", "bfloat16"]]) {
    const dir = sharedPath(`models/fixtures/${name}`);
    if (!dir) continue;
    const cfg = await loadConfig(dir);
    assert.deepEqual(fields(cfg), { ...want["gpt2-tiny"], torchDtype: dtype });
  }
  const sharded = sharedPath("models/fixtures/llama-tiny-gqa-sharded");
  if (sharded) assert.deepEqual(fields(await loadConfig(sharded)), want["llama-tiny-gqa"]);
});

Deno.test("the fact-knowing models and stories260K configs", async () => {
  const g = sharedPath("models/tiny-gpt2-counterfact");
  if (g) {
    const cfg = await loadConfig(g);
    assert.equal(cfg.vocabSize, 50257);
    assert.equal(cfg.intermediateSize, 1024);
    assert.equal(cfg.maxPositions, 128);
    assert.equal(cfg.numHeads, 8);
    assert.equal(cfg.headDim, 32);
    assert.deepEqual(cfg.eosTokenIds, [50256]);
  }
  const l = sharedPath("models/tiny-llama-counterfact");
  if (l) {
    const cfg = await loadConfig(l);
    assert.equal(cfg.family, "llama");
    assert.equal(cfg.headDim, 32);
    assert.equal(cfg.numKvHeads, 5);
    assert.equal(cfg.normEps, 1e-6);
    assert.deepEqual(cfg.rotary, { dim: 32, theta: 10000, interleaved: false });
    assert.equal(cfg.tieWordEmbeddings, false);
  }
  const s = sharedPath("data/models/stories260K");
  if (s) {
    const cfg = await loadConfig(s);
    assert.equal(cfg.tieWordEmbeddings, true);
    assert.equal(cfg.numKvHeads, 4);
    assert.equal(cfg.headDim, 8);
  }
});

Deno.test("HF defaults: kv heads, head_dim, rope_theta, eps, n_inner, tie flags, sliding_window null", () => {
  const l = parseConfig(LLAMA);
  assert.equal(l.numKvHeads, 8);
  assert.equal(l.headDim, 8);
  assert.equal(l.rotary?.theta, 10000);
  assert.equal(l.normEps, 1e-6);
  assert.equal(l.tieWordEmbeddings, false);
  assert.equal(l.bosTokenId, null);
  assert.deepEqual(l.eosTokenIds, []);
  assert.equal(l.eosTokenId, null);
  // an explicit head_dim need not be hidden/heads (q_proj then has heads·head_dim outputs)
  const hd = parseConfig({ ...LLAMA, num_attention_heads: 6, head_dim: 16 });
  assert.equal(hd.headDim, 16);
  // Llama 3 style eos list, pad -1 meaning none, the newer "dtype" key, rope_scaling type "default"
  const l3 = parseConfig({
    ...LLAMA,
    eos_token_id: [2, 3],
    pad_token_id: -1,
    dtype: "bfloat16",
    rope_scaling: { rope_type: "default" },
  });
  assert.deepEqual(l3.eosTokenIds, [2, 3]);
  assert.equal(l3.eosTokenId, 2);
  assert.equal(l3.padTokenId, null);
  assert.equal(l3.torchDtype, "bfloat16");
  const m = parseConfig({ ...LLAMA, model_type: "mistral", sliding_window: null });
  assert.equal(m.slidingWindow, null);
  assert.equal(m.family, "llama");
  // Llama ignores a sliding_window key (only Mistral uses it)
  assert.equal(parseConfig({ ...LLAMA, sliding_window: 4 }).slidingWindow, null);
  const g = parseConfig({
    ...GPT2,
    n_inner: 100,
    n_positions: undefined,
    n_ctx: 32,
    tie_word_embeddings: false,
  });
  assert.equal(g.intermediateSize, 100);
  assert.equal(g.maxPositions, 32);
  assert.equal(g.tieWordEmbeddings, false);
  assert.equal(parseConfig({ ...GPT2, activation_function: "gelu_pytorch_tanh" }).activation, "gelu_new");
  const j = parseConfig({ ...GPT2, model_type: "gptj", rotary_dim: null });
  assert.deepEqual(j.rotary, { dim: 16, theta: 10000, interleaved: true });
});

Deno.test("bad configs: errors name config.json and the field", async () => {
  expectError(
    () => parseConfig({ ...GPT2, model_type: "bert" }),
    "model_type",
    '"bert" is not supported',
    "gpt2, gptj, llama, mistral",
  );
  expectError(
    () => parseConfig({ ...GPT2, model_type: undefined }),
    "model_type",
    "missing is not supported",
  );
  // wrong hidden size: not divisible by the heads
  expectError(() => parseConfig({ ...GPT2, n_embd: 66 }), "n_head", "n_head 4 does not divide n_embd 66");
  expectError(
    () => parseConfig({ ...LLAMA, hidden_size: 60, num_attention_heads: 8 }),
    "num_attention_heads",
    "does not divide hidden_size 60",
  );
  expectError(
    () => parseConfig({ ...LLAMA, hidden_size: "64" }),
    "hidden_size",
    'must be a positive integer, got "64"',
  );
  expectError(() => parseConfig({ ...LLAMA, hidden_size: 0 }), "hidden_size", "positive integer");
  expectError(
    () => parseConfig({ ...LLAMA, num_hidden_layers: 2.5 }),
    "num_hidden_layers",
    "positive integer",
  );
  expectError(
    () => parseConfig({ ...LLAMA, intermediate_size: undefined }),
    "intermediate_size",
    "is required",
  );
  expectError(() => parseConfig({ ...GPT2, n_layer: -2 }), "n_layer", "got -2");
  expectError(
    () => parseConfig({ ...LLAMA, num_key_value_heads: 3 }),
    "num_key_value_heads",
    "num_key_value_heads 3 does not divide num_attention_heads 8",
  );
  expectError(() => parseConfig({ ...LLAMA, rms_norm_eps: -1 }), "rms_norm_eps", "positive number");
  expectError(() => parseConfig({ ...LLAMA, rope_theta: "big" }), "rope_theta", "positive number");
  expectError(
    () => parseConfig({ ...LLAMA, rope_scaling: { type: "yarn", factor: 2 } }),
    "rope_scaling",
    'rope type "yarn" is not supported',
  );
  expectError(
    () => parseConfig({ ...LLAMA, hidden_act: "gelu" }),
    "hidden_act",
    '"gelu" is not supported',
    "silu",
  );
  expectError(
    () => parseConfig({ ...LLAMA, tie_word_embeddings: "yes" }),
    "tie_word_embeddings",
    "true or false",
  );
  expectError(
    () => parseConfig({ ...LLAMA, model_type: "mistral", sliding_window: 0 }),
    "sliding_window",
    "positive integer",
  );
  expectError(() => parseConfig({ ...LLAMA, bos_token_id: 512 }), "bos_token_id", "outside the vocabulary");
  expectError(() => parseConfig({ ...LLAMA, eos_token_id: [1, "x"] }), "eos_token_id", "list of token ids");
  expectError(() => parseConfig({ ...GPT2, activation_function: "relu" }), "activation_function", "gelu_new");
  expectError(
    () => parseConfig({ ...GPT2, scale_attn_by_inverse_layer_idx: true }),
    "scale_attn_by_inverse_layer_idx",
  );
  expectError(
    () => parseConfig({ ...GPT2, model_type: "gptj", rotary_dim: 7 }),
    "rotary_dim",
    "must be even",
  );
  expectError(
    () => parseConfig({ ...GPT2, model_type: "gptj", rotary_dim: 32 }),
    "rotary_dim",
    "at most head_dim 16",
  );
  expectError(() => parseConfig([1]), undefined, "must be a JSON object");

  const dir = await Deno.makeTempDir();
  try {
    const err = await loadConfig(dir).then(() => null, (e) => e);
    assert.ok(err instanceof ConfigError && err.message.startsWith(`${dir}/config.json: cannot read`));
    await Deno.writeTextFile(`${dir}/config.json`, "{ nope");
    const bad = await loadConfig(dir).then(() => null, (e) => e);
    assert.ok(bad instanceof ConfigError && bad.message.includes("not valid JSON"));
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...GPT2, n_head: 5 }));
    const div = await loadConfig(dir).then(() => null, (e) => e);
    assert.ok(div instanceof ConfigError);
    assert.equal(div.file, `${dir}/config.json`);
    assert.equal(div.message, `${dir}/config.json: n_head: n_head 5 does not divide n_embd 64`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
