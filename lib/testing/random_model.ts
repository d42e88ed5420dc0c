/**
 * Randomly initialised models for benchmarks and tests: weights are generated on the GPU from a
 * counter-based hash of (seed, element index), so a 13 GB Llama-2-7B-shaped model needs no checkpoint
 * and no host upload. {@linkcode randomModel} returns a {@linkcode LoadedModel}-compatible object whose
 * `checkpoint` regenerates any weight on request (RomeEditor reads the unedited down-projection from it
 * for ‖W‖ and to restore), and {@linkcode byteTokenizer} is a synthetic byte-level tokenizer for it.
 *
 * ```ts
 * const m = await randomModel({ model_type: "llama", hidden_size: 64, intermediate_size: 172,
 *   num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 300 }, { precision: "f16" });
 * ```
 * @module
 */
import { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { grid1d, rowSegments, words } from "../ops/_chunks.ts";
import { covarianceAccumulate } from "../ops/covariance.ts";
import { scale as scaleInPlace } from "../ops/elementwise.ts";
import { Checkpoint, type CheckpointTensorInfo } from "../model/checkpoint.ts";
import { type ModelConfig, parseConfig } from "../model/config.ts";
import { architectureFor, type LoadedModel } from "../model/load.ts";
import { parseDevices } from "../model/placement.ts";
import { type Precision, weightDtype } from "../model/precision.ts";
import type { FloatArrayFor, FloatTensor, RawTensor, RowRange } from "../model/safetensors.ts";
import type { DecodeOptions, EncodeOptions, Tokenizer } from "../model/tokenizer.ts";
import { type Block, type Linear, type Norm, Transformer } from "../model/transformer.ts";

export { RANDOM_7B_CONFIGS } from "./random_configs.ts";

// ---------------------------------------------------------------------------------------------------
// The hash (mirrors shaders/random.wgsl)

/** The "lowbias32" integer finaliser of shaders/random.wgsl (a bijection on u32). */
export function mix32(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Plain-TS reference of the GPU fill: the value {@linkcode fillRandom} writes at global element index
 * `index` for `seed` and `scale` (before rounding to f16 storage). Bit-exact with the f32 kernel: the
 * [-1, 1) value is exact in f32 and the product by scale is one correctly rounded f32 multiplication.
 */
export function hashUniform(seed: number, index: number, scale: number): number {
  const s = seed >>> 0;
  const h = mix32(mix32((Math.imul(index >>> 0, 0x9e3779b9) + mix32(s)) >>> 0) ^ s);
  return Math.fround(((h >>> 8) * 2 ** -23 - 1) * Math.fround(scale));
}

/** FNV-1a hash of a string (u32), used to derive one seed per tensor name. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** The seed of one named tensor of a random model with model seed `seed`. */
export function tensorSeed(seed: number, name: string): number {
  return mix32((mix32(seed >>> 0) ^ fnv1a(name)) >>> 0);
}

/**
 * Fills `t` (f32 or f16, possibly row-chunked) on the GPU with uniform values in [-scale, scale) from a
 * hash of (seed, global element index): the same seed gives the same values whatever the chunking.
 * f16 storage rounds each value to nearest (so |x| may reach scale rounded to f16). Nothing is
 * uploaded; the work runs at the next flush or readback. Tensors beyond 2³² elements are refused.
 */
export async function fillRandom(t: Tensor, seed: number, scale: number): Promise<void> {
  const op = `fillRandom(${t.name})`;
  if (t.size > 0xffffffff) throw new GpuError(op, `${t.size} elements exceed the u32 index space`);
  if (!Number.isFinite(scale)) throw new GpuError(op, `scale must be finite, got ${scale}`);
  if (!Number.isInteger(seed)) throw new GpuError(op, `seed must be an integer, got ${seed}`);
  const pipe = await t.gpu.pipeline({ family: "random", entry: "fill_uniform", types: { ST: t.dtype } });
  for (const s of rowSegments([t])) {
    const n = s.rows * t.rowSize;
    t.gpu.dispatch(
      "fillRandom",
      pipe,
      [t.chunks[s.at[0].chunk]], // one segment per chunk, starting at its first element
      grid1d(n),
      words(n, s.row * t.rowSize, seed >>> 0, { f: scale }),
    );
  }
}

/** C[i, i] += alpha for a square f32 matrix (possibly row-chunked), in place on the GPU. */
export async function addDiagonal(c: Tensor, alpha: number): Promise<void> {
  const op = `addDiagonal(${c.name})`;
  if (c.dtype !== "f32" || c.shape.length !== 2 || c.shape[0] !== c.shape[1]) {
    throw new GpuError(op, `needs a square f32 matrix, got ${c.dtype} [${c.shape}]`);
  }
  const d = c.shape[0];
  const pipe = await c.gpu.pipeline({ family: "random", entry: "add_diagonal", types: { ST: "f32" } });
  for (const s of rowSegments([c])) {
    c.gpu.dispatch(
      op,
      pipe,
      [c.chunks[s.at[0].chunk]],
      grid1d(s.rows),
      words(s.rows, s.row, d, { f: alpha }),
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// A synthetic tokenizer

/** Ids of the special tokens of {@linkcode byteTokenizer}; byte b has id b + 3. */
export const BYTE_TOKENIZER_SPECIALS: readonly string[] = ["<unk>", "<s>", "</s>"];

class ByteTokenizer implements Tokenizer {
  readonly source: Tokenizer["source"] = "synthetic";
  readonly bosId = 1;
  readonly eosId = 2;
  readonly padId = 0;
  readonly addsBos = true;
  readonly vocabSize: number;
  constructor(vocabSize: number) {
    this.vocabSize = vocabSize;
  }
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out = (opts.addBos ?? this.addsBos) ? [this.bosId] : [];
    for (const b of new TextEncoder().encode(text)) out.push(b + 3);
    return out;
  }
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const bytes: number[] = [];
    let text = "";
    const flush = () => {
      text += new TextDecoder().decode(new Uint8Array(bytes));
      bytes.length = 0;
    };
    for (const id of ids) {
      if (id >= 3 && id < 259) bytes.push(id - 3);
      else if (id >= 259) bytes.push(32 + (id - 259) % 95); // ids past the bytes: printable ASCII
      else if (!opts.skipSpecialTokens) {
        flush();
        text += BYTE_TOKENIZER_SPECIALS[id] ?? "";
      }
    }
    flush();
    return text;
  }
  tokenToId(token: string): number | undefined {
    const s = BYTE_TOKENIZER_SPECIALS.indexOf(token);
    if (s >= 0) return s;
    const m = /^<0x([0-9A-F]{2})>$/.exec(token);
    return m ? parseInt(m[1], 16) + 3 : undefined;
  }
  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined;
    if (id < 3) return BYTE_TOKENIZER_SPECIALS[id];
    if (id < 259) return `<0x${(id - 3).toString(16).toUpperCase().padStart(2, "0")}>`;
    return `<extra_${id}>`;
  }
}

/**
 * A synthetic tokenizer for random models: UTF-8 bytes b → id b + 3 (Llama-style specials: 0 `<unk>`,
 * 1 `<s>` = BOS, prepended by default, 2 `</s>` = EOS). `decode` inverts `encode`; ids ≥ 259 (which a
 * random model samples) decode to printable ASCII so that sampled context templates stay short.
 */
export function byteTokenizer(vocabSize: number): Tokenizer {
  if (!Number.isInteger(vocabSize) || vocabSize < 259) {
    throw new RangeError(
      `byteTokenizer: vocabSize must be an integer ≥ 259 (3 specials + 256 bytes), got ${vocabSize}`,
    );
  }
  return new ByteTokenizer(vocabSize);
}

// ---------------------------------------------------------------------------------------------------
// The random model

/** How one tensor of a random model is generated. */
interface TensorRecipe {
  tensor: Tensor;
  /** "uniform": fillRandom(seed, scale); "ones" / "zeros": constants. */
  kind: "uniform" | "ones" | "zeros";
  seed: number;
  scale: number;
}

/**
 * The "checkpoint" of a random model: no files; {@linkcode RandomCheckpoint.readFloat} regenerates a
 * weight on its device (same kernel, seed and storage type, so the values are bit-identical to the
 * unedited GPU weight) and reads it back. `read` (raw bytes) is not available.
 */
export class RandomCheckpoint extends Checkpoint {
  #recipes: Map<string, TensorRecipe>;
  #fingerprint: string;

  /** Use {@linkcode randomModel}. */
  constructor(dir: string, recipes: Map<string, TensorRecipe>, fingerprint: string) {
    super(dir, [], new Map());
    this.#recipes = recipes;
    this.#fingerprint = fingerprint;
  }

  #recipe(name: string): TensorRecipe {
    const r = this.#recipes.get(name);
    if (!r) {
      throw new Error(`${this.dir}: random model has no tensor ${JSON.stringify(name)} (and no checkpoint)`);
    }
    return r;
  }

  /** All tensor names. */
  override names(): string[] {
    return [...this.#recipes.keys()];
  }

  /** Whether the model has a tensor of this name. */
  override has(name: string): boolean {
    return this.#recipes.has(name);
  }

  /** dtype (the GPU storage type), shape and size of a tensor; `file` is "(random)". */
  override info(name: string): CheckpointTensorInfo {
    const t = this.#recipe(name).tensor;
    return {
      dtype: t.dtype === "f16" ? "F16" : "F32",
      shape: [...t.shape],
      file: "(random)",
      bytes: t.byteLength,
    };
  }

  /** Not available: a random model has no checkpoint bytes. */
  override read(name: string, _rows?: RowRange): Promise<RawTensor> {
    return Promise.reject(
      new Error(
        `${this.dir}: random model has no checkpoint: raw bytes of ${JSON.stringify(name)} cannot be read`,
      ),
    );
  }

  /** The unedited values of a tensor, regenerated on its GPU (bit-identical to what was generated at load). */
  override async readFloat<T extends "f32" | "f16">(
    name: string,
    to: T,
    rows?: RowRange,
  ): Promise<FloatTensor<T>> {
    const r = this.#recipe(name);
    const src = r.tensor;
    const shape = [...src.shape];
    let values: Float32Array;
    if (r.kind === "uniform") {
      const tmp = Tensor.empty(src.gpu, src.shape, src.dtype, { name: `${name}:regenerated` });
      try {
        await fillRandom(tmp, r.seed, r.scale);
        values = await tmp.read();
      } finally {
        tmp.dispose();
      }
    } else {
      values = new Float32Array(src.size).fill(r.kind === "ones" ? 1 : 0);
    }
    if (rows) {
      const rs = src.rowSize;
      values = values.subarray(rows.start * rs, rows.end * rs);
      shape[0] = rows.end - rows.start;
    }
    const data = to === "f16" ? Float16Array.from(values) : values;
    return {
      data: data as FloatArrayFor<T>,
      shape,
      sourceDtype: src.dtype === "f16" ? "F16" : "F32",
      overflow: 0,
      underflow: 0,
    };
  }

  /** Bytes of all tensors on the GPU. */
  override totalBytes(): number {
    let n = 0;
    for (const r of this.#recipes.values()) n += r.tensor.byteLength;
    return n;
  }

  /** "random:" + hash of the config and seed. */
  override fingerprint(): Promise<string> {
    return Promise.resolve(this.#fingerprint);
  }

  /** Nothing to close. */
  override close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Options for {@linkcode randomModel}. */
export interface RandomModelOptions {
  /** f32 (default), f16 or mixed (as {@linkcode LoadModelOptions}). */
  precision?: Precision;
  /** Number of devices, or a comma-separated / array layer → device map. */
  devices?: number | string | number[];
  /** Devices to use instead of opening new ones (not destroyed by dispose). */
  gpus?: Gpu[];
  /** Cap on one storage binding (tests force chunking with it). */
  maxBindingBytes?: number;
  /** Model seed (default 0): the same config and seed give the same weights. */
  seed?: number;
  /** Standard deviation of embeddings and linear weights (default 0.02; uniform, so scale = std·√3). */
  std?: number;
  /** Tokenizer (default {@linkcode byteTokenizer} of the config's vocabulary; null below 259 ids). */
  tokenizer?: Tokenizer | null;
  /** Suppress warnings. */
  quiet?: boolean;
}

/** sha256 hex of a string. */
async function sha256(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Output × input features of each projection of a Llama block. */
function llamaShapes(
  c: ModelConfig,
): Record<"q" | "k" | "v" | "o" | "mlpIn" | "mlpGate" | "mlpOut", number[]> {
  const h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, f = c.intermediateSize;
  return { q: [q, h], k: [kv, h], v: [kv, h], o: [h, q], mlpIn: [f, h], mlpGate: [f, h], mlpOut: [h, f] };
}

/**
 * A randomly initialised model from HF config.json fields (any Llama-like `model_type`: llama, mistral,
 * qwen2, qwen3; see {@linkcode RANDOM_7B_CONFIGS}): embeddings and linear weights uniform with standard
 * deviation `std`, norm weights (q/k norms included) 1, biases 0, all generated on the GPU. Returns a {@linkcode LoadedModel}: `dir` is `random:<model_type>`, `checkpoint` a
 * {@linkcode RandomCheckpoint}, `fingerprint` "random:" + a hash of config and seed.
 */
export async function randomModel(
  cfgRaw: Record<string, unknown>,
  opts: RandomModelOptions = {},
): Promise<LoadedModel> {
  const config = parseConfig(cfgRaw, "random model config");
  if (config.family !== "llama") {
    throw new Error(
      `randomModel: only Llama-like configs (llama, mistral, qwen2, qwen3) are supported, got model_type ${config.modelType}`,
    );
  }
  const seed = opts.seed ?? 0;
  const std = opts.std ?? 0.02;
  const scale = std * Math.sqrt(3);
  const precision = opts.precision ?? "f32";
  const wdt = weightDtype(precision);
  const fingerprint = "random:" +
    (await sha256(JSON.stringify([cfgRaw, seed, std]))).slice(0, 32);
  const dir = `random:${config.modelType}`;

  // Tensor names as a checkpoint of this family would have them.
  const names = new Set<string>(["model.embed_tokens.weight", "model.norm.weight"]);
  if (!config.tieWordEmbeddings) names.add("lm_head.weight");
  const arch = architectureFor(config, names);

  const placement = parseDevices(
    Array.isArray(opts.devices) ? opts.devices.join(",") : (opts.devices ?? (opts.gpus?.length ?? 1)),
    config.numLayers,
  );
  const gpus = opts.gpus ?? await Gpu.openMany(placement.count, {
    maxBindingBytes: opts.maxBindingBytes,
    quiet: opts.quiet,
  });
  if (gpus.length < placement.count) {
    throw new Error(`devices: placement needs ${placement.count} devices, ${gpus.length} given`);
  }

  const recipes = new Map<string, TensorRecipe>();
  const make = async (
    gpu: Gpu,
    name: string,
    shape: number[],
    dtype: DType,
    kind: TensorRecipe["kind"],
    seedName = name,
  ): Promise<Tensor> => {
    const hit = recipes.get(name);
    if (hit) return hit.tensor;
    const t = kind === "zeros"
      ? Tensor.zeros(gpu, shape, dtype, { name })
      : Tensor.empty(gpu, shape, dtype, { name });
    const s = tensorSeed(seed, seedName);
    if (kind === "uniform") await fillRandom(t, s, scale);
    else if (kind === "ones") t.write(new Float32Array(t.size).fill(1));
    recipes.set(name, { tensor: t, kind, seed: s, scale });
    return t;
  };
  const shapes = llamaShapes(config);
  const lin = async (
    gpu: Gpu,
    spec: { weight: string; bias?: string },
    shape: number[],
  ): Promise<Linear> => ({
    w: await make(gpu, spec.weight, shape, wdt, "uniform"),
    b: spec.bias ? await make(gpu, spec.bias, [shape[0]], "f32", "zeros") : undefined,
    layout: "out_in",
    name: spec.weight,
  });
  const norm = async (gpu: Gpu, weight: string, size = config.hiddenSize): Promise<Norm> => ({
    w: await make(gpu, weight, [size], "f32", "ones"),
  });

  const first = gpus[placement.map[0]], last = gpus[placement.map[config.numLayers - 1]];
  const h = config.hiddenSize;
  const embed = await make(first, arch.embed, [config.vocabSize, h], wdt, "uniform");
  const blocks: Block[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const gpu = gpus[placement.map[i]];
    const s = arch.blocks[i];
    const block: Block = {
      ln1: await norm(gpu, s.ln1.weight),
      ln2: await norm(gpu, s.ln2!.weight),
      q: await lin(gpu, s.q, shapes.q),
      k: await lin(gpu, s.k, shapes.k),
      v: await lin(gpu, s.v, shapes.v),
      o: await lin(gpu, s.o, shapes.o),
      mlpIn: await lin(gpu, s.mlpIn, shapes.mlpIn),
      mlpGate: await lin(gpu, s.mlpGate!, shapes.mlpGate),
      mlpOut: await lin(gpu, s.mlpOut, shapes.mlpOut),
    };
    if (s.qNorm) block.qNorm = await norm(gpu, s.qNorm.weight, config.headDim);
    if (s.kNorm) block.kNorm = await norm(gpu, s.kNorm.weight, config.headDim);
    blocks.push(block);
    await gpu.sync(); // bound the recorded work (one layer of a 7B model is ~400 MB of fills)
  }
  const finalNorm = await norm(last, arch.finalNorm.weight);
  // A tied head on another device is a copy of the embedding (same seed), as loadModel uploads it twice.
  const tied = arch.lmHead.weight === arch.embed;
  const lmHead: Linear = {
    w: tied && last === first ? embed : await make(
      last,
      tied ? `${arch.embed}@${last.label}` : arch.lmHead.weight,
      [config.vocabSize, h],
      wdt,
      "uniform",
      arch.lmHead.weight,
    ),
    layout: "out_in",
    name: arch.lmHead.weight,
  };
  for (const g of gpus) await g.sync();

  const net = new Transformer({
    config,
    precision,
    devices: gpus,
    layerDevice: placement.map,
    embed,
    positions: null,
    blocks,
    finalNorm,
    lmHead,
  });
  const checkpoint = new RandomCheckpoint(dir, recipes, fingerprint);
  const ownGpus = !opts.gpus;
  return {
    dir,
    config,
    tokenizer: opts.tokenizer !== undefined
      ? opts.tokenizer
      : config.vocabSize >= 259
      ? byteTokenizer(config.vocabSize)
      : null,
    checkpoint,
    arch,
    net,
    fingerprint,
    f16Overflow: {},
    async dispose() {
      if (ownGpus) { for (const g of gpus) await g.destroy(); }
      else for (const r of recipes.values()) r.tensor.dispose();
    },
  };
}

/**
 * A random symmetric positive definite matrix C = XᵀX/n + ridge·I (f32 [d, d], possibly row-chunked) on
 * `gpu`, from n random rows X uniform in [-1, 1) (so E[C] = I/3 + ridge·I): a stand-in for ROME's key
 * covariance on random models. The caller owns the tensor.
 */
export async function randomCovariance(
  gpu: Gpu,
  d: number,
  opts: { seed?: number; samples?: number; ridge?: number } = {},
): Promise<Tensor> {
  const n = opts.samples ?? Math.min(d, 1024);
  const c = Tensor.zeros(gpu, [d, d], "f32", { name: "random covariance" });
  const rows = Math.max(1, Math.min(n, Math.floor((64 << 20) / (d * 4)))); // X in ≤ 64 MiB pieces
  for (let r = 0, part = 0; r < n; r += rows, part++) {
    const x = Tensor.empty(gpu, [Math.min(rows, n - r), d], "f32", { name: "random keys" });
    await fillRandom(x, tensorSeed(opts.seed ?? 0, `covariance.${part}`), 1);
    await covarianceAccumulate(c, x);
    await gpu.sync();
    x.dispose();
  }
  await scaleInPlace(c, 1 / n);
  await addDiagonal(c, opts.ridge ?? 1);
  await gpu.sync();
  return c;
}
