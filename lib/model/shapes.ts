/**
 * The one config-against-weights shape check (used by {@linkcode loadModel} and by `keg plan`'s virtual
 * model): before anything is uploaded, every tensor the architecture uses must have the shape config.json
 * implies (vocabulary, width, heads, head_dim, MLP width, positions; biases, norms and the Llama-like q/k
 * norms too), and the checkpoint must hold no block beyond the config's layer count. A mismatch is a
 * {@link ShapeError} naming the tensor, its file, its shape, the config file, the shape it implies and
 * the config fields that shape comes from — never a model that runs wrong.
 * @module
 */
import type { ArchitectureSpec, LinearSpec, NormSpec } from "./architecture.ts";
import type { ModelConfig } from "./config.ts";

/** A tensor's stored shape and file (throws for an unknown name). */
export type ShapeInfo = (name: string) => { shape: readonly number[]; file: string };

/** A checkpoint whose tensors do not have the shapes its config implies. */
export class ShapeError extends Error {
  /** The tensor. */
  readonly tensor: string;
  /** An error about `tensor`. */
  constructor(message: string, tensor: string) {
    super(message);
    this.name = "ShapeError";
    this.tensor = tensor;
  }
}

/** One tensor's shape as the config implies it, with the config values (and fields) it comes from. */
export interface ImpliedShape {
  name: string;
  shape: number[];
  why: string;
}

/** config.json field names of a family's style (GPT-2 / GPT-J or Llama-like). */
function fields(cfg: ModelConfig) {
  const gpt = cfg.modelType === "gpt2" || cfg.modelType === "gptj";
  return gpt
    ? {
      D: "n_embd",
      FF: "n_inner",
      H: "n_head",
      KV: "n_head",
      HD: "n_embd / n_head",
      POS: "n_positions",
      L: "n_layer",
    }
    : {
      D: "hidden_size",
      FF: "intermediate_size",
      H: "num_attention_heads",
      KV: "num_key_value_heads",
      HD: "head_dim",
      POS: "max_position_embeddings",
      L: "num_hidden_layers",
    };
}

/** The shape `cfg` implies for every tensor of `arch` (a tensor named twice is listed twice). */
export function impliedShapes(cfg: ModelConfig, arch: ArchitectureSpec): ImpliedShape[] {
  const d = cfg.hiddenSize, hd = cfg.headDim, ff = cfg.intermediateSize;
  const qOut = cfg.numHeads * hd, kvOut = cfg.numKvHeads * hd;
  const f = fields(cfg);
  const why = {
    vocab: `vocab_size ${cfg.vocabSize}`,
    d: `hidden size ${d} (${f.D})`,
    inner: `MLP width ${ff} (${f.FF})`,
    q: `${cfg.numHeads} heads × head_dim ${hd} (${f.H}, ${f.HD})`,
    kv: `${cfg.numKvHeads} key/value heads × head_dim ${hd} (${f.KV}, ${f.HD})`,
    pos: `${cfg.maxPositions} positions (${f.POS})`,
    hd: `${f.HD} ${hd}`,
  };
  const out: ImpliedShape[] = [];
  const expect = (name: string, shape: number[], reason: string) => out.push({ name, shape, why: reason });
  const lin = (s: LinearSpec, o: number, oWhy: string, inp: number, iWhy: string) => {
    const n = o * (s.part?.of ?? 1);
    expect(s.weight, s.layout === "out_in" ? [n, inp] : [inp, n], `out ${oWhy}, in ${iWhy}`);
    if (s.bias) expect(s.bias, [n], `its bias: ${oWhy}`);
  };
  const norm = (n: NormSpec | null | undefined, size: number, reason: string) => {
    if (!n) return;
    expect(n.weight, [size], reason);
    if (n.bias) expect(n.bias, [size], reason);
  };
  expect(arch.embed, [cfg.vocabSize, d], `${why.vocab}, ${why.d}`);
  if (arch.positions) expect(arch.positions, [cfg.maxPositions, d], `${why.pos}, ${why.d}`);
  for (const b of arch.blocks) {
    norm(b.ln1, d, why.d);
    norm(b.ln2, d, why.d);
    lin(b.q, qOut, why.q, d, why.d);
    lin(b.k, kvOut, why.kv, d, why.d);
    lin(b.v, kvOut, why.kv, d, why.d);
    lin(b.o, d, why.d, qOut, why.q);
    lin(b.mlpIn, ff, why.inner, d, why.d);
    if (b.mlpGate) lin(b.mlpGate, ff, why.inner, d, why.d);
    lin(b.mlpOut, d, why.d, ff, why.inner);
    norm(b.qNorm, hd, why.hd);
    norm(b.kNorm, hd, why.hd);
  }
  norm(arch.finalNorm, d, why.d);
  lin(arch.lmHead, cfg.vocabSize, why.vocab, d, why.d);
  return out;
}

/** Full shapes by tensor name, as a checkpoint matching `cfg` would store them. */
export function shapesFromConfig(cfg: ModelConfig, arch: ArchitectureSpec): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const s of impliedShapes(cfg, arch)) m.set(s.name, s.shape);
  return m;
}

/** Optional layer-count check of {@link checkShapes}. */
export interface LayerCheck {
  /** The same family's tensor map built for numLayers + 1 layers. */
  extraLayer: ArchitectureSpec;
  /** Whether the checkpoint holds a tensor. */
  has(name: string): boolean;
}

/**
 * Throws a {@linkcode ShapeError} for the first tensor of `arch` whose shape differs from what `cfg`
 * implies, and (with `layers`) when the checkpoint holds a block beyond the config's layer count.
 * `configFile` names the config in the message, `info` gives each tensor's shape and file.
 */
export function checkShapes(
  cfg: ModelConfig,
  arch: ArchitectureSpec,
  info: ShapeInfo,
  configFile: string,
  layers?: LayerCheck,
): void {
  for (const { name, shape: want, why } of impliedShapes(cfg, arch)) {
    const { shape, file } = info(name);
    if (shape.length !== want.length || want.some((w, i) => w !== shape[i])) {
      throw new ShapeError(
        `${file}: tensor ${name} has shape [${shape.join(", ")}] but ${configFile} implies [${
          want.join(", ")
        }] (${why}): the config does not describe these weights`,
        name,
      );
    }
  }
  const next = layers?.extraLayer.blocks[cfg.numLayers];
  if (next && layers.has(next.mlpOut.weight)) {
    const name = next.mlpOut.weight;
    throw new ShapeError(
      `${info(name).file}: ${configFile} says ${cfg.numLayers} layers (${
        fields(cfg).L
      }) but the checkpoint ` +
        `also holds layer ${cfg.numLayers} (${name}): the config does not describe these weights`,
      name,
    );
  }
}
