/**
 * Checks a checkpoint's tensor shapes against its config before anything is uploaded, so that a config
 * inconsistent with its weights (a wrong head_dim, biases of the wrong length, …) is a clear error naming
 * the tensor, its file, the shape config.json implies and the fields it comes from.
 * @module
 */
import type { ArchitectureSpec, LinearSpec } from "./architecture.ts";
import type { ModelConfig } from "./config.ts";

/** A tensor's stored shape and file. */
export type ShapeInfo = (name: string) => { shape: number[]; file: string };

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

/** One tensor's shape as the config implies it (null: any size), with the fields it comes from. */
export interface ImpliedShape {
  name: string;
  shape: (number | null)[];
  why: string;
}

/** The shape `cfg` implies for every tensor of `arch` (a tensor named twice is listed twice). */
export function impliedShapes(cfg: ModelConfig, arch: ArchitectureSpec): ImpliedShape[] {
  const d = cfg.hiddenSize, hd = cfg.headDim, ff = cfg.intermediateSize;
  const qOut = cfg.numHeads * hd, kvOut = cfg.numKvHeads * hd;
  const out: ImpliedShape[] = [];
  const expect = (name: string, shape: (number | null)[], why: string) => out.push({ name, shape, why });
  const gptStyle = cfg.modelType === "gpt2" || cfg.modelType === "gptj";
  const HD = gptStyle ? "n_embd / n_head" : "head_dim";
  const H = gptStyle ? "n_head" : "num_attention_heads";
  const KV = gptStyle ? "n_head" : "num_key_value_heads";
  const D = gptStyle ? "n_embd" : "hidden_size";
  const FF = gptStyle ? "n_inner" : "intermediate_size";
  const lin = (s: LinearSpec, o: number, inp: number, why: string) => {
    const of = s.part?.of ?? 1;
    expect(s.weight, s.layout === "out_in" ? [o * of, inp] : [inp, o * of], why);
    if (s.bias) expect(s.bias, [o * of], `its bias: ${why.split(";")[0]}`);
  };
  expect(arch.embed, [cfg.vocabSize, d], `vocab_size ${cfg.vocabSize}, ${D} ${d}`);
  if (arch.positions) expect(arch.positions, [null, d], `${D} ${d}`);
  for (const b of arch.blocks) {
    for (const n of [b.ln1, b.ln2]) {
      if (!n) continue;
      expect(n.weight, [d], `${D} ${d}`);
      if (n.bias) expect(n.bias, [d], `${D} ${d}`);
    }
    lin(b.q, qOut, d, `out ${H} ${cfg.numHeads} × ${HD} ${hd}; in ${D} ${d}`);
    lin(b.k, kvOut, d, `out ${KV} ${cfg.numKvHeads} × ${HD} ${hd}; in ${D} ${d}`);
    lin(b.v, kvOut, d, `out ${KV} ${cfg.numKvHeads} × ${HD} ${hd}; in ${D} ${d}`);
    lin(b.o, d, qOut, `out ${D} ${d}; in ${H} ${cfg.numHeads} × ${HD} ${hd}`);
    lin(b.mlpIn, ff, d, `out ${FF} ${ff}; in ${D} ${d}`);
    if (b.mlpGate) lin(b.mlpGate, ff, d, `out ${FF} ${ff}; in ${D} ${d}`);
    lin(b.mlpOut, d, ff, `out ${D} ${d}; in ${FF} ${ff}`);
    for (const n of [b.qNorm, b.kNorm]) if (n) expect(n.weight, [hd], `${HD} ${hd}`);
  }
  expect(arch.finalNorm.weight, [d], `${D} ${d}`);
  if (arch.finalNorm.bias) expect(arch.finalNorm.bias, [d], `${D} ${d}`);
  lin(arch.lmHead, cfg.vocabSize, d, `out vocab_size ${cfg.vocabSize}; in ${D} ${d}`);
  return out;
}

/** Full shapes by tensor name, as a checkpoint matching `cfg` would store them (positions: maxPositions rows). */
export function shapesFromConfig(cfg: ModelConfig, arch: ArchitectureSpec): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const s of impliedShapes(cfg, arch)) m.set(s.name, s.shape.map((x) => x ?? cfg.maxPositions));
  return m;
}

/**
 * Throws a {@linkcode ShapeError} for the first tensor of `arch` whose shape differs from what `cfg`
 * implies. `configFile` names the config in the message.
 */
export function checkShapes(
  cfg: ModelConfig,
  arch: ArchitectureSpec,
  info: ShapeInfo,
  configFile: string,
): void {
  for (const { name, shape: want, why } of impliedShapes(cfg, arch)) {
    const { shape, file } = info(name);
    const ok = shape.length === want.length && want.every((w, i) => w === null || w === shape[i]);
    if (!ok) {
      const w = want.map((x) => x ?? "·").join(", ");
      throw new ShapeError(
        `${file}: ${name} has shape [${shape.join(", ")}], but ${configFile} implies [${w}] (${why})`,
        name,
      );
    }
  }
}
