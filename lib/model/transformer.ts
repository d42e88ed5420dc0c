/**
 * The transformer block loop on WebGPU, shared by every family, with the hooks ROME needs: read the
 * MLP down-projection's input (keys) and output (values) at chosen rows, and add a vector to that output.
 * Layers may live on several devices; the hidden state moves between devices at layer boundaries.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { Tensor } from "../gpu/tensor.ts";
import { linear } from "../ops/matmul.ts";
import { cast } from "../ops/elementwise.ts";
import { layerNorm, rmsNorm } from "../ops/norm.ts";
import { addInPlace, geluNew, siluMul } from "../ops/activation.ts";
import { addToRows, embedding, gatherRows } from "../ops/embedding.ts";
import { attention, type AttentionOptions, KvCache } from "../ops/attention.ts";
import { applyRotary, type RotaryOptions } from "../ops/rotary.ts";
import type { ModelConfig } from "./config.ts";
import type { Layout } from "./architecture.ts";
import { activationDtype, type Precision } from "./precision.ts";

/** A linear layer on the GPU. */
export interface Linear {
  w: Tensor;
  b?: Tensor;
  layout: Layout;
  /** The checkpoint tensor name of the weight. */
  name: string;
}

/** A norm layer on the GPU. */
export interface Norm {
  w: Tensor;
  b?: Tensor;
}

/** One block's weights. */
export interface Block {
  ln1: Norm;
  ln2: Norm | null;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  mlpIn: Linear;
  mlpGate: Linear | null;
  mlpOut: Linear;
  /** Qwen3: per-head RMSNorm of q and of k (weight [headDim]) before rotary. */
  qNorm?: Norm;
  kNorm?: Norm;
}

/** A right-padded batch of token sequences. */
export interface TokenBatch {
  /** Rows. */
  batch: number;
  /** Padded length. */
  seq: number;
  /** Real length of each row. */
  lengths: number[];
  /** Flat ids [batch·seq] (padding filled with 0). */
  ids: Uint32Array;
}

/** Pads token sequences on the right into a {@link TokenBatch}. */
export function padBatch(seqs: number[][]): TokenBatch {
  if (seqs.length === 0) throw new Error("padBatch: empty batch");
  const seq = Math.max(...seqs.map((s) => s.length));
  if (seq === 0) throw new Error("padBatch: every sequence is empty");
  const ids = new Uint32Array(seqs.length * seq);
  seqs.forEach((s, b) => ids.set(s, b * seq));
  return { batch: seqs.length, seq, lengths: seqs.map((s) => s.length), ids };
}

/** Hooks on one layer's MLP down-projection (ROME's rewrite module). Rows are flat `b·seq + position`. */
export interface MlpHooks {
  layer: number;
  /** Rows whose keys (down-projection input) and values (its output, after any added delta) are read. */
  readRows?: Uint32Array;
  /** Rows that get `delta` added to the down-projection output. */
  addRows?: Uint32Array;
  /** [d_model] f32 vector on the layer's device. */
  delta?: Tensor;
  /**
   * Stop the hooked layer's block once its key is computed (statistics need nothing after it): the block
   * returns `keys` (the `readRows` in f32, or without them the whole key [T, d_ff] in the activation
   * dtype) and no values, skips the down-projection, and leaves x as the residual stream after attention.
   * Not with a tape, a cache or a patch.
   */
  keysOnly?: boolean;
}

/**
 * Called by {@link Transformer.block} with a module's output `[T, d_model]` (attention after its output
 * projection, MLP after its down-projection and any ROME hook), in place, before the residual add. Causal
 * tracing (lib/edit/trace.ts) restores clean rows there.
 */
export type BlockPatch = (site: "attn" | "mlp", out: Tensor) => Promise<void>;

/** Activations of one block kept for the backward pass (all [T, ·] in the activation dtype). */
export interface BlockTape {
  /** Block input (before the attention residual). */
  xIn: Tensor;
  /** ln_1 output. */
  h: Tensor;
  /** q, k after rotary; v. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** q, k projections before their per-head norms (blocks with q/k norms only). */
  qRaw?: Tensor;
  kRaw?: Tensor;
  /** Attention output before the o projection. */
  a: Tensor;
  /** Residual after attention (sequential blocks only). */
  mid?: Tensor;
  /** ln_2 output (sequential blocks only). */
  h2?: Tensor;
  /** MLP up (or fc_in) pre-activation, and the gate pre-activation for gated MLPs. */
  up: Tensor;
  gate?: Tensor;
  /** The down-projection input (ROME's key). */
  key: Tensor;
}

/** Releases every tensor of a tape. */
export function disposeTape(t: Partial<BlockTape>): void {
  for (const v of Object.values(t)) (v as Tensor | undefined)?.dispose();
}

/** Attention geometry of a batch: lib/ops/attention's options without the per-call ones. */
export type AttentionShape = Omit<AttentionOptions, "outDtype" | "scale" | "queryOffset" | "kernel">;

/** What {@link Transformer.forward} returns. */
export interface ForwardResult {
  /** f32 logits [rows, vocab] for the requested rows, on the last layer's device. */
  logits: Tensor;
  /** The rows the logits belong to (flat indices). */
  rows: Uint32Array;
  /** Keys [readRows, d_ff] (f32) when hooks.readRows was given. */
  keys?: Float32Array;
  /** Values [readRows, d_model] (f32) when hooks.readRows was given. */
  values?: Float32Array;
}

/** Options for {@link Transformer.forward}. */
export interface ForwardOptions {
  /** Which rows get logits: all (default), the last real token of each row, or explicit flat rows. */
  logitRows?: "all" | "last" | Uint32Array;
  hooks?: MlpHooks;
}

/** Options for {@link Transformer.forwardCached}. */
export interface CachedForwardOptions {
  /** Which rows get logits: all, the last real token of each row (default), or explicit flat rows. */
  logitRows?: "all" | "last" | Uint32Array;
  /**
   * Tokens to keep in the cache per batch row after the step (default `b.lengths`). A row given 0 is
   * computed but not kept: its next step overwrites the same positions (finished rows of a batch).
   */
  keep?: number[];
}

/**
 * The KV caches of a whole model for incremental decoding: one {@link KvCache} per layer, each on its
 * layer's device and in the activation storage type. Batch row b's token at position p sits in row
 * `b·maxLen + p` of every layer's k and v; `lengths[b]` tokens are stored (the same for every layer).
 */
export class ModelKvCache {
  /** Batch rows. */
  readonly batch: number;
  /** Capacity in tokens per batch row. */
  readonly maxLen: number;
  /** One single-layer cache per model layer (on that layer's device). */
  readonly layers: KvCache[];

  /** Allocates the caches of `net`'s layers. */
  constructor(net: Transformer, batch: number, maxLen: number) {
    const c = net.config;
    this.batch = batch;
    this.maxLen = maxLen;
    this.layers = [];
    try {
      for (let i = 0; i < net.blocks.length; i++) {
        this.layers.push(
          new KvCache(net.deviceOf(i), {
            layers: 1,
            batch,
            maxLen,
            kvHeads: c.numKvHeads,
            headDim: c.headDim,
            dtype: net.act,
          }),
        );
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Tokens stored per batch row. */
  get lengths(): readonly number[] {
    return this.layers[0].lengths;
  }

  /** Adds `n` (one count, or one per batch row) to the stored lengths of every layer. */
  advance(n: number | number[]): void {
    for (const l of this.layers) l.advance(n);
  }

  /** Forgets every stored token. */
  reset(): void {
    for (const l of this.layers) l.reset();
  }

  /** Bytes of cache per device index of `net` (k and v of every layer). */
  bytes(net: Transformer): number[] {
    const out = net.devices.map(() => 0);
    for (const l of this.layers) {
      out[net.devices.indexOf(l.k[0].gpu)] += l.k[0].byteLength + l.v[0].byteLength;
    }
    return out;
  }

  /** Releases every layer's tensors. */
  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

/** Copies a tensor to another device (through the host) if needed. */
export async function moveTo(t: Tensor, gpu: Gpu): Promise<Tensor> {
  if (t.gpu === gpu) return t;
  const data = await t.read();
  const out = Tensor.from(gpu, data, t.shape, t.dtype, { name: t.name });
  t.dispose();
  return out;
}

/** The weights of a loaded model on its devices, and the forward pass. */
export class Transformer {
  readonly config: ModelConfig;
  readonly precision: Precision;
  /** Activation storage type. */
  readonly act: DType;
  readonly devices: Gpu[];
  /** Device index of each layer. */
  readonly layerDevice: number[];
  readonly embed: Tensor;
  readonly positions: Tensor | null;
  readonly blocks: Block[];
  readonly finalNorm: Norm;
  readonly lmHead: Linear;

  constructor(init: {
    config: ModelConfig;
    precision: Precision;
    devices: Gpu[];
    layerDevice: number[];
    embed: Tensor;
    positions: Tensor | null;
    blocks: Block[];
    finalNorm: Norm;
    lmHead: Linear;
  }) {
    this.config = init.config;
    this.precision = init.precision;
    this.act = activationDtype(init.precision);
    this.devices = init.devices;
    this.layerDevice = init.layerDevice;
    this.embed = init.embed;
    this.positions = init.positions;
    this.blocks = init.blocks;
    this.finalNorm = init.finalNorm;
    this.lmHead = init.lmHead;
  }

  /**
   * The same weights run with another precision's activation storage (used to redo a stage with f32
   * activations when f16 produced a non-finite value). Shares every tensor with this model.
   */
  withPrecision(precision: Precision): Transformer {
    return new Transformer({ ...this, precision, layerDevice: this.layerDevice, devices: this.devices });
  }

  /** The device holding layer `i`. */
  deviceOf(layer: number): Gpu {
    return this.devices[this.layerDevice[layer]];
  }

  /** The device of the final norm and LM head. */
  get lastDevice(): Gpu {
    return this.deviceOf(this.blocks.length - 1);
  }

  async #norm(x: Tensor, n: Norm): Promise<Tensor> {
    const c = this.config;
    return c.normType === "rmsnorm"
      ? await rmsNorm(x, n.w, c.normEps, { outDtype: this.act })
      : await layerNorm(x, n.w, n.b ?? null, c.normEps, { outDtype: this.act });
  }

  /**
   * RMSNorm of each head of x [T, heads·headDim] over its headDim (Qwen3's q_norm / k_norm), one weight
   * [headDim] shared by the heads. (x is viewed as [T·heads, headDim], so it must not be row-chunked.)
   */
  async headNorm(x: Tensor, n: Norm, heads: number): Promise<Tensor> {
    const c = this.config;
    const y = await rmsNorm(x.reshape([x.rows * heads, c.headDim]), n.w, c.normEps, { outDtype: this.act });
    return y.reshape([x.rows, heads * c.headDim]);
  }

  #lin(x: Tensor, l: Linear, outDtype: DType = this.act): Promise<Tensor> {
    return linear(x, l.w, { layout: l.layout, bias: l.b, outDtype });
  }

  /**
   * Embeds a batch: token embedding (+ learned positions for GPT-2). Row r's token s stands at position
   * `positionOffset[r] + s` (default 0: a prompt from its start). Learned positions past the table are
   * clamped to its last row: {@link forwardCached} only lets that happen to tokens it does not keep.
   */
  async embedTokens(b: TokenBatch, positionOffset?: readonly number[]): Promise<Tensor> {
    const x = await embedding(this.embed, b.ids, { outDtype: this.act });
    if (this.positions) {
      const last = this.positions.shape[0] - 1;
      const pos = new Uint32Array(b.batch * b.seq);
      for (let r = 0; r < b.batch; r++) {
        const off = positionOffset?.[r] ?? 0;
        for (let p = 0; p < b.seq; p++) pos[r * b.seq + p] = Math.min(off + p, last);
      }
      await embedding(this.positions, pos, { accumulate: x });
    }
    return x;
  }

  /**
   * Runs block `i` on the hidden state `x` in place (x becomes the block's output). With `tape`, the
   * activations the backward pass needs are kept there instead of being released. With `cache`, `b` holds
   * new tokens that follow the `cache.lengths` stored ones: q and k are rotated at those positions, k and v
   * are appended to layer i's cache and attention runs over the cache (the caller advances the cache after
   * the last layer; {@link forwardCached} does all of it). With both, the tape keeps the new tokens' q, k and
   * v and the cache holds the keys and values attention read (lib/model/suffix.ts: v*'s suffix rows). With
   * `patch`, the attention and MLP outputs are handed to it before their residual adds.
   */
  async block(
    i: number,
    x: Tensor,
    b: TokenBatch,
    hooks?: MlpHooks,
    tape?: Partial<BlockTape>,
    cache?: ModelKvCache,
    patch?: BlockPatch,
  ): Promise<{ keys?: Tensor; values?: Tensor }> {
    const c = this.config;
    const blk = this.blocks[i];
    const keep = (t: Tensor, name: keyof BlockTape) => tape ? (tape[name] = t) : t.dispose();
    if (tape) tape.xIn = await cast(x, x.dtype);
    const h = await this.#norm(x, blk.ln1);
    let q = await this.#lin(h, blk.q), k = await this.#lin(h, blk.k);
    const v = await this.#lin(h, blk.v);
    if (blk.qNorm && blk.kNorm) {
      const qn = await this.headNorm(q, blk.qNorm, c.numHeads);
      const kn = await this.headNorm(k, blk.kNorm, c.numKvHeads);
      keep(q, "qRaw"), keep(k, "kRaw");
      q = qn, k = kn;
    }
    if (c.rotary) {
      const ro = { ...this.rotaryShape(b)!, positionOffset: cache ? [...cache.lengths] : undefined };
      await applyRotary(q, { ...ro, heads: c.numHeads });
      await applyRotary(k, { ...ro, heads: c.numKvHeads });
    }
    let a: Tensor;
    if (cache) {
      const kv = cache.layers[i];
      kv.append(0, k, v, b.seq);
      a = await attention(q, kv.k[0], kv.v[0], {
        ...this.attentionShape(b, i),
        ...kv.attentionOptions(b.seq),
        outDtype: this.act,
      });
    } else {
      a = await attention(q, k, v, { ...this.attentionShape(b, i), outDtype: this.act });
    }
    keep(q, "q"), keep(k, "k"), keep(v, "v");
    const attnOut = await this.#lin(a, blk.o);
    if (patch) await patch("attn", attnOut);
    keep(a, "a");
    let mlpIn: Tensor;
    if (blk.ln2) {
      await addInPlace(x, attnOut);
      attnOut.dispose();
      keep(h, "h");
      if (tape) tape.mid = await cast(x, x.dtype);
      mlpIn = await this.#norm(x, blk.ln2);
    } else {
      mlpIn = h; // GPT-J: attention and MLP read the same ln_1 output; attnOut is added below
    }
    const up = await this.#lin(mlpIn, blk.mlpIn);
    let key: Tensor;
    if (blk.mlpGate) {
      const gate = await this.#lin(mlpIn, blk.mlpGate);
      key = await siluMul(gate, up, { outDtype: this.act });
      keep(gate, "gate");
    } else {
      key = await geluNew(up, { outDtype: this.act });
    }
    keep(up, "up");
    keep(mlpIn, blk.ln2 ? "h2" : "h");
    if (hooks?.keysOnly && hooks.layer === i) {
      if (tape || cache || patch) {
        throw new Error("Transformer.block: keysOnly runs without tape, cache or patch");
      }
      if (!blk.ln2) attnOut.dispose();
      if (!hooks.readRows) return { keys: key };
      const keys = await gatherRows(key, hooks.readRows);
      key.dispose();
      return { keys };
    }
    const out = await this.#lin(key, blk.mlpOut);
    const result: { keys?: Tensor; values?: Tensor } = {};
    if (hooks && hooks.layer === i) {
      if (hooks.addRows && hooks.delta) await addToRows(out, hooks.delta, hooks.addRows);
      if (hooks.readRows) {
        result.keys = await gatherRows(key, hooks.readRows);
        result.values = await gatherRows(out, hooks.readRows);
      }
    }
    keep(key, "key");
    if (patch) await patch("mlp", out);
    await addInPlace(x, out);
    out.dispose();
    if (!blk.ln2) {
      await addInPlace(x, attnOut);
      attnOut.dispose();
    }
    return result;
  }

  /** Rotary geometry of a batch for this model (heads left to the caller), or null without rotary. */
  rotaryShape(b: TokenBatch): Omit<RotaryOptions, "heads"> | null {
    const r = this.config.rotary;
    if (!r) return null;
    return {
      batch: b.batch,
      seq: b.seq,
      headDim: this.config.headDim,
      rotaryDim: r.dim,
      theta: r.theta,
      interleaved: r.interleaved,
      ...(r.scaling ? { scaling: r.scaling } : {}),
    };
  }

  /** Attention geometry of a batch for this model (at `layer`, for per-layer sliding windows). */
  attentionShape(b: TokenBatch, layer?: number): AttentionShape {
    const c = this.config;
    if (c.layerWindows && layer === undefined) {
      throw new Error("attentionShape: this model's sliding window differs per layer; pass the layer");
    }
    const window = c.layerWindows ? c.layerWindows[layer!] : c.slidingWindow;
    return {
      batch: b.batch,
      seqQ: b.seq,
      seqKv: b.seq,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
      kvLengths: b.lengths,
      window,
    };
  }

  /** Rows whose logits are wanted. */
  static logitRowsFor(b: TokenBatch, which: "all" | "last" | Uint32Array): Uint32Array {
    if (which instanceof Uint32Array) return which;
    if (which === "last") return Uint32Array.from(b.lengths.map((n, r) => r * b.seq + n - 1));
    return Uint32Array.from({ length: b.batch * b.seq }, (_, i) => i);
  }

  /** Final norm and LM head on selected rows of the last hidden state. */
  async head(x: Tensor, rows: Uint32Array, all: boolean): Promise<Tensor> {
    const sel = all ? x : await gatherRows(x, rows, { outDtype: this.act });
    const h = await this.#norm(sel, this.finalNorm);
    if (!all) sel.dispose();
    const logits = await this.#lin(h, this.lmHead, "f32");
    h.dispose();
    return logits;
  }

  /**
   * Runs the embedding and blocks 0…`upto` (inclusive). Returns the residual stream after block `upto` and,
   * when the hooks read rows at a layer ≤ upto, that layer's keys and values (f32 tensors on its device).
   * With `hooks.keysOnly` (hooks.layer = upto), x is the residual after the layer's attention and only keys
   * come back (see {@link MlpHooks.keysOnly}).
   */
  async prefix(
    b: TokenBatch,
    upto: number,
    hooks?: MlpHooks,
  ): Promise<{ x: Tensor; keys?: Tensor; values?: Tensor }> {
    let x = await this.embedTokens(b);
    let keys: Tensor | undefined, values: Tensor | undefined;
    for (let i = 0; i <= upto; i++) {
      x = await moveTo(x, this.deviceOf(i));
      const r = await this.block(i, x, b, hooks);
      if (r.keys) keys = r.keys;
      if (r.values) values = r.values;
    }
    return { x, keys, values };
  }

  /** Full forward pass of a padded batch. */
  async forward(b: TokenBatch, opts: ForwardOptions = {}): Promise<ForwardResult> {
    const { x, keys, values } = await this.prefix(b, this.blocks.length - 1, opts.hooks);
    const which = opts.logitRows ?? "all";
    const rows = Transformer.logitRowsFor(b, which);
    const logits = await this.head(x, rows, which === "all");
    x.dispose();
    const out: ForwardResult = { logits, rows };
    if (keys) out.keys = await keys.read(), keys.dispose();
    if (values) out.values = await values.read(), values.dispose();
    return out;
  }

  /** Allocates per-layer KV caches for `batch` rows of up to `maxLen` tokens (see {@link forwardCached}). */
  createKvCache(batch: number, maxLen: number): ModelKvCache {
    return new ModelKvCache(this, batch, maxLen);
  }

  /**
   * One incremental step: the `b.seq` tokens per row of `b` follow the tokens already in `cache` (prefill:
   * an empty cache and a right-padded prompt batch; decoding: one token per row). Rotary and learned
   * positions start at each row's cached length, attention sees the cached tokens and the new ones
   * (causal, padding and sliding window as in {@link forward}). Afterwards the cache keeps
   * `opts.keep ?? b.lengths` tokens per row (padding past a row's length is overwritten by later steps).
   * Returns f32 logits [rows, vocab] on the last layer's device for `opts.logitRows` (default "last").
   */
  async forwardCached(b: TokenBatch, cache: ModelKvCache, opts: CachedForwardOptions = {}): Promise<Tensor> {
    if (cache.batch !== b.batch) {
      throw new Error(`forwardCached: batch ${b.batch} != cache batch ${cache.batch}`);
    }
    const keep = opts.keep ?? b.lengths;
    const start = [...cache.lengths];
    for (let r = 0; r < b.batch; r++) {
      if (!Number.isInteger(keep[r]) || keep[r] < 0 || keep[r] > b.seq) {
        throw new Error(`forwardCached: row ${r} keeps ${keep[r]} of ${b.seq} new tokens`);
      }
      if (start[r] + b.seq > cache.maxLen) {
        throw new Error(
          `forwardCached: row ${r} has ${start[r]} + ${b.seq} tokens, over the cache's ${cache.maxLen}`,
        );
      }
      if (this.positions && keep[r] > 0 && start[r] + keep[r] > this.positions.shape[0]) {
        throw new Error(
          `forwardCached: row ${r} reaches position ${start[r] + keep[r] - 1}, past the model's ${
            this.positions.shape[0]
          } learned positions`,
        );
      }
    }
    let x = await this.embedTokens(b, start);
    try {
      for (let i = 0; i < this.blocks.length; i++) {
        x = await moveTo(x, this.deviceOf(i));
        await this.block(i, x, b, undefined, undefined, cache);
      }
      const which = opts.logitRows ?? "last";
      const logits = await this.head(x, Transformer.logitRowsFor(b, which), which === "all");
      cache.advance(keep);
      return logits;
    } finally {
      x.dispose();
    }
  }

  /**
   * The weight tensors (each once): the embeddings when `fromLayer` is 0, the blocks from `fromLayer` on,
   * the final norm and the LM head.
   */
  weightTensors(fromLayer = 0): Tensor[] {
    const seen = new Set<Tensor>();
    const add = (t: Tensor | null | undefined) => {
      if (t) seen.add(t);
    };
    if (fromLayer === 0) add(this.embed), add(this.positions);
    for (const blk of this.blocks.slice(fromLayer)) {
      for (const n of [blk.ln1, blk.ln2, blk.qNorm, blk.kNorm]) if (n) add(n.w), add(n.b);
      for (const l of [blk.q, blk.k, blk.v, blk.o, blk.mlpIn, blk.mlpGate, blk.mlpOut]) {
        if (l) add(l.w), add(l.b);
      }
    }
    add(this.finalNorm.w), add(this.finalNorm.b), add(this.lmHead.w), add(this.lmHead.b);
    return [...seen];
  }

  /** Bytes of weights per device. */
  weightBytes(): number[] {
    const out = this.devices.map(() => 0);
    for (const t of this.weightTensors()) out[this.devices.indexOf(t.gpu)] += t.byteLength;
    return out;
  }
}
