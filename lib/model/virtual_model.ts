/**
 * A model placed on virtual devices (lib/gpu/virtual.ts) for `keg plan`: the same config parsing, tensor
 * map, shape checks, placement and upload path as {@linkcode loadModel}, but every weight is allocated
 * without being read. It needs only config.json: tensor shapes come from the checkpoint's headers when the
 * directory has one, else from the config ({@linkcode shapesFromConfig}).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { Checkpoint, type CheckpointTensorInfo, openCheckpoint, resolveModelDir } from "./checkpoint.ts";
import { loadConfig, type ModelConfig, parseConfig } from "./config.ts";
import { architectureFor, type LoadedModel, placeWeights } from "./load.ts";
import { parseDevices } from "./placement.ts";
import type { Precision } from "./precision.ts";
import type { FloatArrayFor, FloatTensor, RawTensor } from "./safetensors.ts";
import { checkShapes, shapesFromConfig } from "./shapes.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";

/** Options of {@linkcode virtualModel}. */
export interface VirtualModelOptions {
  /** f32 (default), f16 or mixed. */
  precision?: Precision;
  /** Number of devices or a layer → device map (default: all of `gpus`). */
  devices?: number | string | number[];
  /** The virtual devices. */
  gpus: Gpu[];
}

/**
 * Stored shapes without values: `readFloat` returns the stored shape with a single value 0.5 as data
 * (RomeEditor reads the unedited down-projection only for ‖W‖ on the host; nothing is restored in a plan).
 */
class ShapeCheckpoint extends Checkpoint {
  #shapes: Map<string, number[]>;
  constructor(dir: string, shapes: Map<string, number[]>) {
    super(dir, [], new Map());
    this.#shapes = shapes;
  }
  #shape(name: string): number[] {
    const s = this.#shapes.get(name);
    if (!s) throw new Error(`${this.dir}: no tensor ${JSON.stringify(name)} (planned model)`);
    return s;
  }
  override names(): string[] {
    return [...this.#shapes.keys()];
  }
  override has(name: string): boolean {
    return this.#shapes.has(name);
  }
  override info(name: string): CheckpointTensorInfo {
    const shape = this.#shape(name);
    return { dtype: "F32", shape, file: "(planned)", bytes: 4 * shape.reduce((a, b) => a * b, 1) };
  }
  override read(name: string): Promise<RawTensor> {
    return Promise.reject(new Error(`${this.dir}: a planned model has no bytes of ${JSON.stringify(name)}`));
  }
  override readFloat<T extends "f32" | "f16">(name: string, to: T): Promise<FloatTensor<T>> {
    const shape = this.#shape(name);
    // one value, not the whole tensor: the editor only takes ‖W‖ of it (allocating 7B-scale weights on the
    // host would be most of a plan's time)
    const data = (to === "f16" ? new Float16Array(1) : new Float32Array(1)).fill(0.5);
    return Promise.resolve({
      data: data as FloatArrayFor<T>,
      shape: [...shape],
      sourceDtype: "F32",
      overflow: 0,
      underflow: 0,
    });
  }
  override totalBytes(): number {
    let n = 0;
    for (const s of this.#shapes.values()) n += 4 * s.reduce((a, b) => a * b, 1);
    return n;
  }
  override fingerprint(): Promise<string> {
    return Promise.resolve("");
  }
  override close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A stand-in for a BPE tokenizer when a plan has none: one token per word or punctuation mark (with its
 * leading space), about what a BPE vocabulary of 32k–150k gives on English prompts. Ids are a hash in
 * [3, vocab); `decode` writes each id as one word, so sampled templates re-encode to the same length.
 * BOS (id 1) is prepended when the config names a bos_token_id and is not GPT-2 / GPT-J style.
 */
export function wordTokenizer(config: ModelConfig): Tokenizer {
  const V = config.vocabSize;
  const addsBos = config.bosTokenId !== null && config.family === "llama";
  const bos = addsBos ? config.bosTokenId : null;
  const idOf = (w: string): number => {
    let h = 0x811c9dc5;
    for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193) >>> 0;
    return 3 + (h % Math.max(1, V - 3));
  };
  const words = (t: string) => t.match(/ ?[\p{L}\p{N}]+| ?[^\s\p{L}\p{N}]|\s+/gu) ?? [];
  return {
    source: "synthetic",
    bosId: bos,
    eosId: config.eosTokenId,
    padId: null,
    vocabSize: V,
    addsBos,
    encode: (text, o) => [...((o?.addBos ?? addsBos) && bos !== null ? [bos] : []), ...words(text).map(idOf)],
    decode: (ids) => ids.filter((i) => i !== bos).map((i) => ` w${i}`).join(""),
    tokenToId: (t) => idOf(t),
    idToToken: (i) => `w${i}`,
  };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/**
 * Places a model given by a directory, hub id or config.json path on virtual devices. The tokenizer is the
 * directory's, else {@linkcode wordTokenizer} (one token per word, about a BPE tokenizer's count). The
 * fingerprint is empty, so nothing planned is ever cached.
 */
export async function virtualModel(source: string, opts: VirtualModelOptions): Promise<LoadedModel> {
  let dir: string, config: ModelConfig;
  if (source.endsWith(".json") && await isFile(source)) {
    dir = source.includes("/") ? source.slice(0, source.lastIndexOf("/")) : ".";
    config = parseConfig(JSON.parse(await Deno.readTextFile(source)), source);
  } else {
    dir = await resolveModelDir(source);
    config = await loadConfig(dir);
  }
  const real = source.endsWith(".json") ? null : await openCheckpoint(dir).catch(() => null);
  let names: Set<string>;
  if (real) names = new Set(real.names());
  else {
    names = new Set(["transformer.wte.weight", "model.embed_tokens.weight"]);
    if (!config.tieWordEmbeddings) names.add("lm_head.weight");
  }
  const arch = architectureFor(config, names);
  let shapes: Map<string, number[]>;
  if (real) {
    checkShapes(config, arch, (n) => real.info(n), `${dir}/config.json`, {
      extraLayer: architectureFor({ ...config, numLayers: config.numLayers + 1 }, names),
      has: (n) => names.has(n),
    });
    shapes = new Map();
    for (const n of real.names()) shapes.set(n, real.info(n).shape);
    await real.close();
  } else {
    shapes = shapesFromConfig(config, arch);
  }
  const precision = opts.precision ?? "f32";
  const placement = parseDevices(
    Array.isArray(opts.devices) ? opts.devices.join(",") : (opts.devices ?? opts.gpus.length),
    config.numLayers,
  );
  if (opts.gpus.length < placement.count) {
    throw new Error(`devices: placement needs ${placement.count} devices, ${opts.gpus.length} given`);
  }
  const { net } = await placeWeights(config, arch, opts.gpus, placement.map, precision, {
    shape: (n) => {
      const s = shapes.get(n);
      if (!s) throw new Error(`${dir}: no tensor ${JSON.stringify(n)} for the plan`);
      return s;
    },
  });
  const tokenizer: Tokenizer = await loadTokenizer(dir).catch(() => null) ?? wordTokenizer(config);
  return {
    dir,
    config,
    tokenizer,
    checkpoint: new ShapeCheckpoint(dir, shapes),
    arch,
    net,
    fingerprint: "",
    f16Overflow: {},
    dispose: () => Promise.resolve(),
  };
}
