/**
 * Loading a HuggingFace checkpoint onto one or more WebGPU devices in a chosen precision.
 * @module
 */
import { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { ArchitectureSpec, LinearSpec, NormSpec } from "./architecture.ts";
import { type Checkpoint, openCheckpoint, resolveModelDir } from "./checkpoint.ts";
import { loadConfig, type ModelConfig } from "./config.ts";
import { gpt2Architecture } from "./gpt2.ts";
import { gptjArchitecture } from "./gptj.ts";
import { llamaArchitecture } from "./llama.ts";
import { parseDevices } from "./placement.ts";
import { checkShapes } from "./shapes.ts";
import { type Precision, weightDtype } from "./precision.ts";
import type { FloatTensor } from "./safetensors.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import { type Block, type Linear, type Norm, Transformer } from "./transformer.ts";
import { countNonFiniteBits } from "./validate.ts";

/** Options for {@link loadModel}. */
export interface LoadModelOptions {
  /** f32 (default), f16 or mixed. */
  precision?: Precision;
  /** Number of devices, or a comma-separated / array layer → device map. */
  devices?: number | string | number[];
  /** Devices to use instead of opening new ones. */
  gpus?: Gpu[];
  /** Cap on one storage binding (tests force chunking with it). */
  maxBindingBytes?: number;
  /** Suppress warnings. */
  quiet?: boolean;
  /** Refuse weights holding NaN/±inf, naming the tensor (default true; a host scan as tensors are read). */
  checkFinite?: boolean;
  /** Progress callback (tensor name, index, total). */
  onProgress?: (name: string, index: number, total: number) => void;
}

/** A loaded model: weights on the GPU, its config, tokenizer and where it came from. */
export interface LoadedModel {
  /** Directory the checkpoint was read from. */
  dir: string;
  config: ModelConfig;
  /** The tokenizer, or null when the directory has none (test fixtures). */
  tokenizer: Tokenizer | null;
  checkpoint: Checkpoint;
  arch: ArchitectureSpec;
  net: Transformer;
  /** Content fingerprint of the checkpoint (cache keys). */
  fingerprint: string;
  /** Total values that overflowed f16 while loading (became ±inf), per tensor. */
  f16Overflow: Record<string, number>;
  /** Releases every device. */
  dispose(): Promise<void>;
}

/** Builds the tensor map for a config's family. */
export function architectureFor(cfg: ModelConfig, names: Set<string>): ArchitectureSpec {
  switch (cfg.family) {
    case "gpt2":
      return gpt2Architecture(cfg, names);
    case "gptj":
      return gptjArchitecture(cfg, names);
    case "llama":
      return llamaArchitecture(cfg, names);
  }
}

/** Slice `index` of `of` equal parts along the output dimension of a linear weight held on the host. */
function slicePart(
  data: Float32Array | Float16Array,
  shape: number[],
  layout: "out_in" | "in_out",
  index: number,
  of: number,
) {
  if (layout === "out_in") {
    const rows = shape[0] / of, cols = shape[1];
    return { data: data.subarray(index * rows * cols, (index + 1) * rows * cols), shape: [rows, cols] };
  }
  const rows = shape[0], cols = shape[1] / of;
  const out = data instanceof Float16Array ? new Float16Array(rows * cols) : new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * shape[1] + index * cols, r * shape[1] + (index + 1) * cols), r * cols);
  }
  return { data: out, shape: [rows, cols] };
}

/** Every tensor name an architecture reads (with repeats). */
export function neededTensors(arch: ArchitectureSpec): string[] {
  const needed: string[] = [arch.embed, arch.finalNorm.weight, arch.lmHead.weight];
  if (arch.positions) needed.push(arch.positions);
  if (arch.finalNorm.bias) needed.push(arch.finalNorm.bias);
  if (arch.lmHead.bias) needed.push(arch.lmHead.bias);
  for (const b of arch.blocks) {
    for (const n of [b.ln1, b.ln2]) if (n) needed.push(n.weight, ...(n.bias ? [n.bias] : []));
    for (const l of [b.q, b.k, b.v, b.o, b.mlpIn, b.mlpGate, b.mlpOut]) {
      if (l) needed.push(l.weight, ...(l.bias ? [l.bias] : []));
    }
    for (const n of [b.qNorm, b.kNorm]) if (n) needed.push(n.weight);
  }
  return needed;
}

/** Where {@link placeWeights} gets each tensor: its values (a checkpoint), or only its shape (keg plan). */
export interface WeightSource {
  /** The stored values (the whole tensor, in `dtype`); absent: allocate uninitialised from `shape`. */
  read?: (name: string, dtype: "f32" | "f16") => Promise<FloatTensor>;
  /** The stored shape (needed without `read`). */
  shape?: (name: string) => number[];
  /** Progress callback (tensor name, index, total). */
  onProgress?: (name: string, index: number, total: number) => void;
  /** Receives every tensor as it is placed (so that a failed load can release them). */
  placed?: Tensor[];
}

/**
 * Puts a model's weights on its devices as {@link loadModel} does (layer i on `gpus[layerDevice[i]]`, the
 * embedding on layer 0's device, the final norm and head on the last layer's; a tensor used twice on one
 * device, e.g. a tied head, is uploaded once; weights in the precision's dtype, norms and biases f32). With
 * a shape-only source every tensor is allocated without being read or written: keg plan runs this same
 * allocation path on virtual devices.
 */
export async function placeWeights(
  config: ModelConfig,
  arch: ArchitectureSpec,
  gpus: Gpu[],
  layerDevice: number[],
  precision: Precision,
  source: WeightSource,
): Promise<{ net: Transformer; f16Overflow: Record<string, number> }> {
  const wdt = weightDtype(precision);
  const f16Overflow: Record<string, number> = {};
  let loaded = 0;
  const total = new Set(neededTensors(arch)).size;
  const cache = new Map<string, Tensor>();
  const upload = async (
    gpu: Gpu,
    name: string,
    dtype: DType,
    part?: { index: number; of: number; layout: "out_in" | "in_out" },
  ): Promise<Tensor> => {
    const key = `${gpu.label}|${name}|${dtype}|${part ? part.index : ""}`;
    const hit = cache.get(key);
    if (hit) return hit;
    let t: Tensor;
    if (source.read) {
      const r = await source.read(name, dtype as "f32" | "f16");
      if (r.overflow) f16Overflow[name] = r.overflow;
      let data = r.data, shape = r.shape;
      if (part) {
        if (shape.length === 1) {
          const n = shape[0] / part.of;
          data = data.subarray(part.index * n, (part.index + 1) * n);
          shape = [n];
        } else {
          ({ data, shape } = slicePart(data, shape, part.layout, part.index, part.of));
        }
      }
      t = Tensor.from(gpu, data, shape, dtype, { name });
    } else {
      let shape = source.shape!(name);
      if (part) {
        shape = shape.length === 1
          ? [shape[0] / part.of]
          : part.layout === "out_in"
          ? [shape[0] / part.of, shape[1]]
          : [shape[0], shape[1] / part.of];
      }
      t = Tensor.empty(gpu, shape, dtype, { name });
    }
    cache.set(key, t);
    source.placed?.push(t);
    source.onProgress?.(name, ++loaded, total);
    return t;
  };
  const lin = async (gpu: Gpu, s: LinearSpec): Promise<Linear> => {
    const part = s.part ? { ...s.part, layout: s.layout } : undefined;
    return {
      w: await upload(gpu, s.weight, wdt, part),
      b: s.bias ? await upload(gpu, s.bias, "f32", part) : undefined,
      layout: s.layout,
      name: s.weight,
    };
  };
  const norm = async (gpu: Gpu, s: NormSpec): Promise<Norm> => ({
    w: await upload(gpu, s.weight, "f32"),
    b: s.bias ? await upload(gpu, s.bias, "f32") : undefined,
  });

  const first = gpus[layerDevice[0]], last = gpus[layerDevice[config.numLayers - 1]];
  const embed = await upload(first, arch.embed, wdt);
  const positions = arch.positions ? await upload(first, arch.positions, wdt) : null;
  const blocks: Block[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const gpu = gpus[layerDevice[i]];
    const s = arch.blocks[i];
    const block: Block = {
      ln1: await norm(gpu, s.ln1),
      ln2: s.ln2 ? await norm(gpu, s.ln2) : null,
      q: await lin(gpu, s.q),
      k: await lin(gpu, s.k),
      v: await lin(gpu, s.v),
      o: await lin(gpu, s.o),
      mlpIn: await lin(gpu, s.mlpIn),
      mlpGate: s.mlpGate ? await lin(gpu, s.mlpGate) : null,
      mlpOut: await lin(gpu, s.mlpOut),
    };
    if (s.qNorm) block.qNorm = await norm(gpu, s.qNorm);
    if (s.kNorm) block.kNorm = await norm(gpu, s.kNorm);
    blocks.push(block);
  }
  const finalNorm = await norm(last, arch.finalNorm);
  const lmHead = await lin(last, arch.lmHead);
  for (const g of gpus) await g.sync();
  const net = new Transformer({
    config,
    precision,
    devices: gpus,
    layerDevice,
    embed,
    positions,
    blocks,
    finalNorm,
    lmHead,
  });
  return { net, f16Overflow };
}

/** Loads a model directory (or a hub id found in the HF cache) onto WebGPU devices. */
export async function loadModel(nameOrDir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const dir = await resolveModelDir(nameOrDir);
  const config = await loadConfig(dir);
  const checkpoint = await openCheckpoint(dir);
  const names = new Set(checkpoint.names());
  const arch = architectureFor(config, names);
  const precision = opts.precision ?? "f32";

  // Every tensor the architecture needs must exist: list all missing ones at once.
  const needed = neededTensors(arch);
  const missing = [...new Set(needed)].filter((n) => !names.has(n));
  if (missing.length) {
    throw new Error(
      `${dir}: checkpoint lacks ${missing.length} tensor(s) a ${config.modelType} model needs: ${
        missing.slice(0, 12).join(", ")
      }${missing.length > 12 ? ", …" : ""}`,
    );
  }
  // config.json must describe these weights: every shape and the layer count (lib/model/shapes.ts)
  checkShapes(config, arch, (n) => checkpoint.info(n), `${dir.replace(/\/$/, "")}/config.json`, {
    extraLayer: architectureFor({ ...config, numLayers: config.numLayers + 1 }, names),
    has: (n) => names.has(n),
  });

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

  const ownGpus = !opts.gpus;
  const placed: Tensor[] = [];
  let net: Transformer, f16Overflow: Record<string, number>;
  try {
    ({ net, f16Overflow } = await placeWeights(config, arch, gpus, placement.map, precision, {
      read: async (name, dtype) => {
        const r = await checkpoint.readFloat(name, dtype);
        if (opts.checkFinite !== false) {
          const bad = countNonFiniteBits(r.data) - r.overflow;
          if (bad > 0) {
            throw new Error(
              `${dir}: tensor ${name} holds ${bad} NaN/infinite value(s) of ${r.data.length}: the checkpoint is corrupt`,
            );
          }
        }
        return r;
      },
      onProgress: opts.onProgress,
      placed,
    }));
  } catch (e) {
    for (const t of placed) t.dispose();
    await checkpoint.close();
    if (ownGpus) { for (const g of gpus) await g.destroy(); }
    throw e;
  }
  const tokenizer = await loadTokenizer(dir).catch((e) => {
    if (e instanceof Deno.errors.NotFound || /no tokenizer/i.test(String(e))) return null;
    throw e;
  });
  const fingerprint = await checkpoint.fingerprint();
  return {
    dir,
    config,
    tokenizer,
    checkpoint,
    arch,
    net,
    fingerprint,
    f16Overflow,
    async dispose() {
      await checkpoint.close();
      if (ownGpus) { for (const g of gpus) await g.destroy(); }
    },
  };
}
