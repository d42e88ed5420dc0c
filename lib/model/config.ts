/**
 * HuggingFace `config.json` for the architectures keg runs (`gpt2`, `gptj`, `llama`, `mistral`, `qwen2`,
 * `qwen3`), parsed into one normalised, validated {@linkcode ModelConfig}. Each family's field names and
 * defaults follow transformers' `GPT2Config`, `GPTJConfig`, `LlamaConfig`, `MistralConfig`, `Qwen2Config`
 * and `Qwen3Config` (the Llama-like ones through their descriptors in `families/`); every error is a
 * {@linkcode ConfigError} naming the file and the field.
 * @module
 */
import type { RopeScaling } from "../ops/rotary.ts";
import type { ConfigFlag, LlamaLikeFamily } from "./llama_like.ts";
import { LLAMA_LIKE_FAMILIES } from "./families/mod.ts";

/** A config.json that keg cannot use. */
export class ConfigError extends Error {
  /** The config file. */
  readonly file: string;
  /** The offending field, if any. */
  readonly field: string | undefined;
  /** An error about `file` (and `field`, if given). */
  constructor(file: string, message: string, field?: string) {
    super(`${file}: ${field === undefined ? "" : `${field}: `}${message}`);
    this.name = "ConfigError";
    this.file = file;
    this.field = field;
  }
}

/** The `model_type` values keg supports. */
export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = [
  "gpt2",
  "gptj",
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
];

/** A supported HF `model_type`. */
export type ModelType = "gpt2" | "gptj" | "llama" | "mistral" | "qwen2" | "qwen3";

/** The forward-pass implementation a model uses (Mistral, Qwen2 and Qwen3 are Llama-like: `llama`). */
export type ModelFamily = "gpt2" | "gptj" | "llama";

/** Rotary position embedding settings. */
export interface RotaryConfig {
  /** Leading dims of each head that are rotated (GPT-J `rotary_dim`; the full head_dim for Llama). Even. */
  dim: number;
  /** Base of the inverse frequencies: `inv_freq[i] = theta^(-2i/dim)`. */
  theta: number;
  /**
   * true: GPT-J's `rotate_every_two`, rotating adjacent pairs (2i, 2i+1). false: Llama's `rotate_half`,
   * rotating pairs (i, i + dim/2).
   */
  interleaved: boolean;
  /** `rope_scaling` (llama3 or linear); absent for the default frequencies. */
  scaling?: RopeScaling;
}

/** A model's architecture, normalised across families. */
export interface ModelConfig {
  /** HF `model_type`. */
  modelType: ModelType;
  /** Implementation family: gpt2, gptj, or llama (llama and mistral). */
  family: ModelFamily;
  /** Rows of the token embedding (and of the LM head). */
  vocabSize: number;
  /** Residual stream width (`n_embd` / `hidden_size`). */
  hiddenSize: number;
  /** Transformer blocks. */
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (`num_key_value_heads`; = numHeads without GQA). Divides numHeads. */
  numKvHeads: number;
  /**
   * Dims per head. hidden/heads, except Llama/Mistral configs may set `head_dim` explicitly, so the q
   * projection has numHeads·headDim outputs, which need not equal hiddenSize.
   */
  headDim: number;
  /** MLP inner width (GPT-2/GPT-J `n_inner`, default 4·hidden; Llama `intermediate_size`). */
  intermediateSize: number;
  /** Longest sequence the position scheme supports (`n_positions` / `max_position_embeddings`). */
  maxPositions: number;
  /** LayerNorm (GPT-2, GPT-J; with bias) or RMSNorm (Llama, Mistral; weight only). */
  normType: "layernorm" | "rmsnorm";
  /** Norm epsilon (`layer_norm_epsilon` / `rms_norm_eps`). */
  normEps: number;
  /** MLP activation: `gelu_new` (tanh approximation) for GPT-2/GPT-J, `silu` (gated MLP) for Llama. */
  activation: "gelu_new" | "silu";
  /** Rotary embedding, or null for GPT-2's learned absolute positions (`wpe`). */
  rotary: RotaryConfig | null;
  /** Mistral: a query at q attends to keys k with q − window < k ≤ q. null: full causal attention. */
  slidingWindow: number | null;
  /** The LM head reuses the token embedding matrix (no `lm_head.weight` stored). */
  tieWordEmbeddings: boolean;
  /** The LM head has a bias (GPT-J). */
  lmHeadBias: boolean;
  /** q/k/v/o projections have biases (GPT-2: yes; GPT-J: no; Llama: `attention_bias`; Qwen2: q/k/v). */
  attentionBias: boolean;
  /** Whether o_proj has a bias when it differs from {@linkcode ModelConfig.attentionBias} (Qwen2: false). */
  attentionOutBias?: boolean;
  /** Qwen3: per-head RMSNorm (`q_norm` / `k_norm`, weight [headDim]) on q and k before rotary. */
  qkNorm?: boolean;
  /**
   * Per-layer sliding window (Qwen2/Qwen3 with `use_sliding_window`): entry i is layer i's window or null
   * for full attention. Absent: every layer uses {@linkcode ModelConfig.slidingWindow}.
   */
  layerWindows?: (number | null)[];
  /** MLP projections have biases (GPT-2/GPT-J: yes; Llama: `mlp_bias`). */
  mlpBias: boolean;
  /** GPT-J: `x = x + attn(ln_1(x)) + mlp(ln_1(x))` from one norm; otherwise sequential pre-norm blocks. */
  parallelResidual: boolean;
  /** `bos_token_id`, or null. */
  bosTokenId: number | null;
  /** The first `eos_token_id`, or null (see {@linkcode ModelConfig.eosTokenIds} for all of them). */
  eosTokenId: number | null;
  /** `eos_token_id` as a list (Llama 3 style configs give several); empty when unset. */
  eosTokenIds: number[];
  /** `pad_token_id`, or null. */
  padTokenId: number | null;
  /** `torch_dtype` (or the newer `dtype`), e.g. "float32", "bfloat16"; null when unset. */
  torchDtype: string | null;
  /** The parsed config.json, for fields not normalised here. */
  raw: Readonly<Record<string, unknown>>;
}

type Raw = Record<string, unknown>;

class Reader {
  constructor(readonly file: string, readonly raw: Raw) {}

  fail(field: string | undefined, msg: string): never {
    throw new ConfigError(this.file, msg, field);
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  /** A positive integer; `def` when absent or null (undefined def: required). */
  posInt(field: string, def?: number): number {
    const v = this.raw[field];
    if (v === undefined || v === null) {
      if (def === undefined) this.fail(field, "is required (a positive integer)");
      return def;
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      this.fail(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  /** A non-negative integer (required when absent). */
  posIntOrZero(field: string): number {
    const v = this.raw[field];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      this.fail(field, `must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  posNumber(field: string, def: number): number {
    const v = this.raw[field];
    if (v === undefined || v === null) return def;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      this.fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(field: string, def: boolean): boolean {
    const v = this.raw[field];
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id or null; negative ids (some configs write pad_token_id -1) mean "none". */
  tokenId(field: string): number | null {
    const v = this.raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v === "number" && Number.isSafeInteger(v) && v < 0) return null;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      this.fail(field, `must be a non-negative integer or null, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  tokenIds(field: string): number[] {
    const v = this.raw[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) {
        this.fail(field, `must be a token id or a list of token ids, got ${JSON.stringify(v)}`);
      }
    }
    return list as number[];
  }

  oneOf<T extends string>(field: string, allowed: Record<string, T>, def: string): T {
    const v = this.raw[field] ?? def;
    if (typeof v !== "string" || !Object.hasOwn(allowed, v)) {
      this.fail(
        field,
        `${JSON.stringify(v)} is not supported (supported: ${Object.keys(allowed).join(", ")})`,
      );
    }
    return allowed[v];
  }

  divides(small: number, smallField: string, big: number, bigField: string): void {
    if (big % small !== 0) this.fail(smallField, `${smallField} ${small} does not divide ${bigField} ${big}`);
  }
}

type Common = Omit<
  ModelConfig,
  "modelType" | "family" | "raw" | "bosTokenId" | "eosTokenId" | "eosTokenIds" | "padTokenId" | "torchDtype"
>;

function gpt2(r: Reader): Common {
  const hidden = r.posInt("n_embd");
  const heads = r.posInt("n_head");
  r.divides(heads, "n_head", hidden, "n_embd");
  if (r.bool("scale_attn_by_inverse_layer_idx", false)) {
    r.fail("scale_attn_by_inverse_layer_idx", "true is not supported");
  }
  if (!r.bool("scale_attn_weights", true)) r.fail("scale_attn_weights", "false is not supported");
  return {
    vocabSize: r.posInt("vocab_size"),
    hiddenSize: hidden,
    numLayers: r.posInt("n_layer"),
    numHeads: heads,
    numKvHeads: heads,
    headDim: hidden / heads,
    intermediateSize: r.posInt("n_inner", 4 * hidden),
    maxPositions: r.posInt("n_positions", r.has("n_ctx") ? r.posInt("n_ctx") : undefined),
    normType: "layernorm",
    normEps: r.posNumber("layer_norm_epsilon", 1e-5),
    activation: r.oneOf("activation_function", GELU_NEW, "gelu_new"),
    rotary: null,
    slidingWindow: null,
    tieWordEmbeddings: r.bool("tie_word_embeddings", true),
    lmHeadBias: false,
    attentionBias: true,
    mlpBias: true,
    parallelResidual: false,
  };
}

function gptj(r: Reader): Common {
  const hidden = r.posInt("n_embd");
  const heads = r.posInt("n_head");
  r.divides(heads, "n_head", hidden, "n_embd");
  const headDim = hidden / heads;
  // transformers leaves rotary_dim=None meaning "rotate everything"; per head that is head_dim.
  const rotDim = r.posInt("rotary_dim", headDim);
  if (rotDim % 2 !== 0 || rotDim > headDim) {
    r.fail(
      "rotary_dim",
      `rotary_dim ${rotDim} must be even and at most head_dim ${headDim} (n_embd / n_head)`,
    );
  }
  return {
    vocabSize: r.posInt("vocab_size"),
    hiddenSize: hidden,
    numLayers: r.posInt("n_layer"),
    numHeads: heads,
    numKvHeads: heads,
    headDim,
    intermediateSize: r.posInt("n_inner", 4 * hidden),
    maxPositions: r.posInt("n_positions"),
    normType: "layernorm",
    normEps: r.posNumber("layer_norm_epsilon", 1e-5),
    activation: r.oneOf("activation_function", GELU_NEW, "gelu_new"),
    // GPT-J hard-codes base 10000 (create_sinusoidal_positions); its config has no rope_theta.
    rotary: { dim: rotDim, theta: 10000, interleaved: true },
    slidingWindow: null,
    tieWordEmbeddings: r.bool("tie_word_embeddings", false),
    lmHeadBias: true,
    attentionBias: false,
    mlpBias: true,
    parallelResidual: true,
  };
}

function flag(r: Reader, f: ConfigFlag): boolean {
  return typeof f === "boolean" ? f : r.bool(f.field, f.default);
}

/** Reads `rope_scaling`: null/default, `linear` or `llama3`; any other type is an error naming it. */
function ropeScaling(r: Reader): RopeScaling | undefined {
  const s = r.raw.rope_scaling;
  if (s === undefined || s === null) return undefined;
  const F = "rope_scaling";
  if (typeof s !== "object" || Array.isArray(s)) {
    r.fail(F, `must be an object or null, got ${JSON.stringify(s)}`);
  }
  const o = s as Raw;
  const t = o.rope_type ?? o.type;
  const num = (k: string, positive = true): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v) || (positive ? v <= 0 : v < 0)) {
      r.fail(`${F}.${k}`, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (t === "default") return undefined;
  if (t === "linear") return { type: "linear", factor: num("factor") };
  if (t === "llama3") {
    const lo = num("low_freq_factor"), hi = num("high_freq_factor");
    if (!(hi > lo)) r.fail(`${F}.high_freq_factor`, `${hi} must exceed low_freq_factor ${lo}`);
    const old = num("original_max_position_embeddings");
    if (!Number.isSafeInteger(old)) {
      r.fail(`${F}.original_max_position_embeddings`, `must be a positive integer, got ${old}`);
    }
    return {
      type: "llama3",
      factor: num("factor"),
      lowFreqFactor: lo,
      highFreqFactor: hi,
      originalMaxPositions: old,
    };
  }
  r.fail(
    F,
    `rope type ${JSON.stringify(t ?? null)} is not supported (supported: default, linear, llama3; ${
      JSON.stringify(s)
    })`,
  );
}

/** Qwen2/Qwen3 windows: only with `use_sliding_window`, on `layer_types` or layers ≥ `max_window_layers`. */
function perLayerWindows(r: Reader, layers: number): (number | null)[] | undefined {
  if (!r.bool("use_sliding_window", false)) return undefined;
  const window = r.posInt("sliding_window", 4096);
  const types = r.raw.layer_types;
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== layers) {
      r.fail("layer_types", `must be a list of ${layers} entries (num_hidden_layers)`);
    }
    return types.map((t, i) => {
      if (t === "sliding_attention") return window;
      if (t === "full_attention") return null;
      r.fail("layer_types", `entry ${i} ${JSON.stringify(t)} is not full_attention or sliding_attention`);
    });
  }
  const from = r.raw.max_window_layers === undefined ? 28 : r.posIntOrZero("max_window_layers");
  return Array.from({ length: layers }, (_, i) => i >= from ? window : null);
}

function llamaLike(r: Reader, fam: LlamaLikeFamily): Common {
  const hidden = r.posInt("hidden_size");
  const heads = r.posInt("num_attention_heads");
  const kvHeads = r.posInt("num_key_value_heads", heads);
  r.divides(kvHeads, "num_key_value_heads", heads, "num_attention_heads");
  let headDim: number;
  if (r.has("head_dim")) headDim = r.posInt("head_dim");
  else if (fam.defaults.headDim !== null) headDim = fam.defaults.headDim;
  else {
    r.divides(heads, "num_attention_heads", hidden, "hidden_size");
    headDim = hidden / heads;
  }
  if (headDim % 2 !== 0) r.fail("head_dim", `head_dim ${headDim} must be even for rotary embeddings`);
  const scaling = ropeScaling(r);
  const numLayers = r.posInt("num_hidden_layers");
  let slidingWindow: number | null = null;
  let layerWindows: (number | null)[] | undefined;
  if (fam.slidingWindow === "all" && r.has("sliding_window")) slidingWindow = r.posInt("sliding_window");
  if (fam.slidingWindow === "per_layer") {
    layerWindows = perLayerWindows(r, numLayers);
    if (layerWindows && layerWindows.every((w) => w === null)) layerWindows = undefined;
    if (layerWindows) slidingWindow = layerWindows.find((w) => w !== null) ?? null;
  }
  const qkvBias = flag(r, fam.qkvBias), oBias = flag(r, fam.oBias);
  const out: Common = {
    vocabSize: r.posInt("vocab_size"),
    hiddenSize: hidden,
    numLayers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    intermediateSize: r.posInt("intermediate_size"),
    maxPositions: r.posInt("max_position_embeddings", fam.defaults.maxPositions),
    normType: "rmsnorm",
    normEps: r.posNumber("rms_norm_eps", fam.defaults.rmsNormEps),
    activation: r.oneOf("hidden_act", SILU, "silu"),
    rotary: {
      dim: headDim,
      theta: r.posNumber("rope_theta", fam.defaults.ropeTheta),
      interleaved: false,
      ...(scaling ? { scaling } : {}),
    },
    slidingWindow,
    tieWordEmbeddings: r.bool("tie_word_embeddings", false),
    lmHeadBias: false,
    attentionBias: qkvBias,
    mlpBias: flag(r, fam.mlpBias),
    parallelResidual: false,
  };
  if (oBias !== qkvBias) out.attentionOutBias = oBias;
  if (fam.qkNorm) out.qkNorm = true;
  if (layerWindows) out.layerWindows = layerWindows;
  return out;
}

// Activation names transformers maps to the same function.
const GELU_NEW: Record<string, "gelu_new"> = { gelu_new: "gelu_new", gelu_pytorch_tanh: "gelu_new" };
const SILU: Record<string, "silu"> = { silu: "silu", swish: "silu" };

/**
 * Parses and validates a config object (as read from config.json). `file` names the source in errors.
 * Throws a {@linkcode ConfigError} for an unknown `model_type`, a missing or ill-typed field, heads that
 * do not divide the hidden size, KV heads that do not divide the heads, or an unsupported option.
 */
export function parseConfig(raw: unknown, file = "config.json"): ModelConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(file, "must be a JSON object");
  }
  const r = new Reader(file, raw as Raw);
  const mt = (raw as Raw).model_type;
  if (typeof mt !== "string" || !SUPPORTED_MODEL_TYPES.includes(mt as ModelType)) {
    r.fail(
      "model_type",
      `${mt === undefined ? "missing" : JSON.stringify(mt)} is not supported (supported: ${
        SUPPORTED_MODEL_TYPES.join(", ")
      })`,
    );
  }
  const modelType = mt as ModelType;
  const common = modelType === "gpt2"
    ? gpt2(r)
    : modelType === "gptj"
    ? gptj(r)
    : llamaLike(r, LLAMA_LIKE_FAMILIES[modelType]);
  const dtype = (raw as Raw).torch_dtype ?? (raw as Raw).dtype ?? null;
  if (dtype !== null && typeof dtype !== "string") {
    r.fail("torch_dtype", `must be a string, got ${JSON.stringify(dtype)}`);
  }
  const eos = r.tokenIds("eos_token_id");
  const cfg: ModelConfig = {
    modelType,
    family: modelType === "gpt2" || modelType === "gptj" ? modelType : "llama",
    ...common,
    bosTokenId: r.tokenId("bos_token_id"),
    eosTokenId: eos[0] ?? null,
    eosTokenIds: eos,
    padTokenId: r.tokenId("pad_token_id"),
    torchDtype: dtype as string | null,
    raw: Object.freeze({ ...(raw as Raw) }),
  };
  if (cfg.bosTokenId !== null && cfg.bosTokenId >= cfg.vocabSize) {
    r.fail("bos_token_id", `${cfg.bosTokenId} is outside the vocabulary (vocab_size ${cfg.vocabSize})`);
  }
  for (const id of cfg.eosTokenIds) {
    if (id >= cfg.vocabSize) {
      r.fail("eos_token_id", `${id} is outside the vocabulary (vocab_size ${cfg.vocabSize})`);
    }
  }
  return cfg;
}

/** Reads and validates `<dir>/config.json` (see {@linkcode parseConfig}). */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const file = dir.endsWith("/") ? `${dir}config.json` : `${dir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ConfigError(file, `cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, `not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw, file);
}
