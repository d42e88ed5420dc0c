/**
 * Model validation at load: config.json against the checkpoint, so that a config that does not describe
 * the weights is an error naming the tensor and the config value, never a model that runs wrong:
 *
 * - every tensor the architecture uses has the shape the config implies (vocabulary, width, heads, MLP
 *   width, positions; biases and norms too);
 * - the checkpoint holds no block beyond the config's layer count (`n_layer: 4` on a 6-layer checkpoint);
 * - every weight is finite ({@link countNonFiniteBits}, run on the host as tensors are read).
 *
 * Also the one token-length check every command shares ({@link checkTokenCount}).
 * @module
 */
import type { ArchitectureSpec, LinearSpec } from "./architecture.ts";
import type { ModelConfig } from "./config.ts";

/** Shape lookup of a checkpoint's tensors. */
export interface ShapeSource {
  /** The tensor's shape (throws for an unknown name). */
  shapeOf(name: string): readonly number[];
  /** Whether the checkpoint holds the tensor. */
  has(name: string): boolean;
}

function fmt(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/**
 * Checks every tensor of `arch` against the shapes `cfg` implies; `dir` names the model in errors and
 * `extraLayer` is the same family's map built for numLayers + 1 (to detect blocks the config leaves out).
 */
export function validateShapes(
  dir: string,
  cfg: ModelConfig,
  arch: ArchitectureSpec,
  src: ShapeSource,
  extraLayer: ArchitectureSpec | null,
): void {
  const d = cfg.hiddenSize, qOut = cfg.numHeads * cfg.headDim, kvOut = cfg.numKvHeads * cfg.headDim;
  const why: Record<string, string> = {
    vocab: `vocab_size ${cfg.vocabSize}`,
    d: `hidden size ${d} (n_embd / hidden_size)`,
    inner: `MLP width ${cfg.intermediateSize} (n_inner / intermediate_size)`,
    q: `${cfg.numHeads} heads × ${cfg.headDim} (n_head / num_attention_heads, head_dim)`,
    kv: `${cfg.numKvHeads} key/value heads × ${cfg.headDim} (num_key_value_heads)`,
    pos: `${cfg.maxPositions} positions (n_positions / max_position_embeddings)`,
  };
  const expect = (name: string, want: readonly number[], reasons: string[]) => {
    const got = src.shapeOf(name);
    if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
      throw new Error(
        `${dir}: tensor ${name} has shape ${fmt(got)} but config.json implies ${fmt(want)} (${
          reasons.map((r) => why[r]).join(", ")
        }): the config does not describe these weights`,
      );
    }
  };
  const linear = (s: LinearSpec, inDim: number, inWhy: string, outDim: number, outWhy: string) => {
    const out = outDim * (s.part?.of ?? 1);
    expect(s.weight, s.layout === "in_out" ? [inDim, out] : [out, inDim], [inWhy, outWhy]);
    if (s.bias) expect(s.bias, [out], [outWhy]);
  };
  expect(arch.embed, [cfg.vocabSize, d], ["vocab", "d"]);
  if (arch.positions) expect(arch.positions, [cfg.maxPositions, d], ["pos", "d"]);
  const norm = (n: { weight: string; bias?: string }) => {
    expect(n.weight, [d], ["d"]);
    if (n.bias) expect(n.bias, [d], ["d"]);
  };
  for (const b of arch.blocks) {
    norm(b.ln1);
    if (b.ln2) norm(b.ln2);
    linear(b.q, d, "d", qOut, "q");
    linear(b.k, d, "d", kvOut, "kv");
    linear(b.v, d, "d", kvOut, "kv");
    linear(b.o, qOut, "q", d, "d");
    linear(b.mlpIn, d, "d", cfg.intermediateSize, "inner");
    if (b.mlpGate) linear(b.mlpGate, d, "d", cfg.intermediateSize, "inner");
    linear(b.mlpOut, cfg.intermediateSize, "inner", d, "d");
  }
  norm(arch.finalNorm);
  linear(arch.lmHead, d, "d", cfg.vocabSize, "vocab");
  const next = extraLayer?.blocks[cfg.numLayers];
  if (next && src.has(next.mlpOut.weight)) {
    throw new Error(
      `${dir}: config.json says ${cfg.numLayers} layers (n_layer / num_hidden_layers) but the checkpoint ` +
        `also holds layer ${cfg.numLayers} (${next.mlpOut.weight}): the config does not describe these weights`,
    );
  }
}

/**
 * Counts NaN/±inf values of f32 or f16 data by their exponent bits (fast: no float compares).
 */
export function countNonFiniteBits(data: Float32Array | Float16Array): number {
  let n = 0;
  if (data instanceof Float32Array) {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) n++;
  } else {
    const bits = new Uint16Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7c00) === 0x7c00) n++;
  }
  return n;
}

/**
 * The one length check: a sequence of `tokens` tokens must fit the model's `maxPositions` positions
 * (config.maxPositions).
 * `what` describes the sequence (e.g. `request "Angola": the prompt with the longest template`).
 */
export function checkTokenCount(maxPositions: number, tokens: number, what: string): void {
  if (tokens > maxPositions) {
    throw new Error(
      `${what} is ${tokens} tokens, more than the model's ${maxPositions} positions ` +
        `(n_positions / max_position_embeddings); shorten it`,
    );
  }
}
