/**
 * Rotary position embeddings (RoPE), in place, in both conventions: GPT-J's interleaved pairs
 * (`rotate_every_two` on the first `rotaryDim` dims of each head) and Llama/Mistral/NeoX's `rotate_half`
 * pairs `(i, i + rotaryDim/2)`. The inverse rotation is the backward pass ({@link rotaryBackward}).
 *
 * Angles follow HuggingFace in f32: `inv_freq[i] = 1 / theta^(2i/rotaryDim)` and `angle = pos · inv_freq[i]`,
 * each step rounded to f32 as torch does. Accuracy for large positions: the GPU's `sin`/`cos` are only
 * specified to an absolute error of 2⁻¹¹ on [−π, π] and not at all outside it, which is useless at
 * position 4096. So cos/sin of each f32 angle are evaluated on the host in f64 and rounded once to f32
 * (≤ ½ ulp, at least as accurate as torch's f32 `cos`), into a table [positions, rotaryDim/2] cached per
 * device, theta and rotaryDim, grown by doubling when a larger position is needed (the table stays
 * allocated for the device's lifetime: positions · rotaryDim · 4 bytes). The f32 angle itself carries HF's
 * rounding (|Δangle| ≤ pos·2⁻²⁴·(3 + 1/e) against exact math, ≈ 1e-3 at position 4096), on purpose: it is
 * what the reference implementations compute.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { GpuError } from "../gpu/errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { grid1d, rowSegments, words } from "./_chunks.ts";

/** Options of {@link applyRotary}. */
export interface RotaryOptions {
  /** Batch rows B; x has B·seq rows. */
  batch: number;
  /** Tokens per batch row. */
  seq: number;
  /** Heads in x's row (x's row size is heads·headDim). */
  heads: number;
  /** Dims per head. */
  headDim: number;
  /** Leading dims of each head that are rotated (even, ≤ headDim; GPT-J `rotary_dim`, else headDim). */
  rotaryDim: number;
  /** RoPE base (`rope_theta`; GPT-J: 10000). */
  theta: number;
  /** Frequency scaling (`rope_scaling`: llama3 or linear); absent: the default frequencies. */
  scaling?: RopeScaling;
  /** true: GPT-J pairs (2i, 2i+1); false: rotate_half pairs (i, i + rotaryDim/2). */
  interleaved: boolean;
  /** Position of each row's token 0: one number for all batch rows or one per batch row (default 0). */
  positionOffset?: number | number[];
  /** Rotate by −angle (the transpose: the backward pass). */
  inverse?: boolean;
}

/**
 * `rope_scaling` of a config, as HF `modeling_rope_utils` applies it to the default inverse frequencies:
 * `linear` divides every frequency by `factor`; `llama3` (Llama 3.1/3.2/3.3) keeps the high frequencies
 * (wavelength < original/high_freq_factor), divides the low ones (wavelength > original/low_freq_factor) by
 * `factor` and blends the band between. Both apply at every position; cos/sin are not rescaled.
 */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };

interface Table {
  buffer: GPUBuffer;
  positions: number;
}
const tables = new WeakMap<Gpu, Map<string, Table>>();

/**
 * HuggingFace's f32 inverse frequencies: `1 / theta^(arange(0, rotaryDim, 2) / rotaryDim)` with every step
 * rounded to f32 (`Math.pow` in f64 then rounded: the correctly rounded f32 power), then `scaling` applied
 * in f32 step by step as `_compute_llama3_parameters` / `_compute_linear_scaling_rope_parameters` do.
 */
export function rotaryInvFreq(theta: number, rotaryDim: number, scaling?: RopeScaling): Float32Array {
  const half = rotaryDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const e = Math.fround((2 * i) / rotaryDim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, e)));
  }
  if (scaling?.type === "linear") {
    for (let i = 0; i < half; i++) out[i] = Math.fround(out[i] / scaling.factor);
  } else if (scaling?.type === "llama3") {
    const f = Math.fround;
    const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: old } = scaling;
    const lowWavelen = old / lo, highWavelen = old / hi;
    for (let i = 0; i < half; i++) {
      const inv = out[i];
      const wavelen = f((2 * Math.PI) / inv);
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        out[i] = f(inv / factor);
        continue;
      }
      const smooth = f(f(f(old / wavelen) - lo) / (hi - lo));
      out[i] = f(f(f(1 - smooth) * f(inv / factor)) + f(smooth * inv));
    }
  }
  return out;
}

/** Cache key of a scaling (empty for none). */
function scalingKey(s: RopeScaling | undefined): string {
  return s ? JSON.stringify(s) : "";
}

/** cos/sin table [positions, rotaryDim/2] of vec2 (cos, sin) of the f32 angle `fround(pos · inv_freq)`. */
export function rotaryTable(
  theta: number,
  rotaryDim: number,
  positions: number,
  scaling?: RopeScaling,
): Float32Array {
  const inv = rotaryInvFreq(theta, rotaryDim, scaling);
  const half = inv.length;
  const out = new Float32Array(positions * half * 2);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * inv[i]);
      out[2 * (p * half + i)] = Math.cos(a);
      out[2 * (p * half + i) + 1] = Math.sin(a);
    }
  }
  return out;
}

function table(
  gpu: Gpu,
  theta: number,
  rotaryDim: number,
  needed: number,
  scaling: RopeScaling | undefined,
): GPUBuffer {
  let perGpu = tables.get(gpu);
  if (!perGpu) tables.set(gpu, perGpu = new Map());
  const key = `${theta}|${rotaryDim}|${scalingKey(scaling)}`;
  const have = perGpu.get(key);
  if (have && have.positions >= needed) return have.buffer;
  let positions = 1024;
  while (positions < needed) positions *= 2;
  const bytes = positions * rotaryDim * 4; // half pairs × vec2<f32>
  if (bytes > gpu.device.limits.maxStorageBufferBindingSize) {
    throw new GpuError(
      "rotary",
      `position ${needed - 1} needs a cos/sin table of ${bytes} bytes, over this adapter's binding limit`,
    );
  }
  const buffer = gpu.createStorage(bytes, "rotary.table");
  gpu.write(buffer, 0, rotaryTable(theta, rotaryDim, positions, scaling));
  if (have) gpu.release(have.buffer);
  perGpu.set(key, { buffer, positions });
  return buffer;
}

function isCount(n: number, min: number): boolean {
  return Number.isInteger(n) && n >= min;
}

/**
 * Applies the rotary embedding to x [batch·seq, heads·headDim] in place (f32 math, stored back in x's
 * dtype). Position of row `b·seq + s` is `positionOffset[b] + s`. Works on row-chunked tensors.
 */
export async function applyRotary(x: Tensor, opts: RotaryOptions): Promise<void> {
  const { batch, seq, heads, headDim, rotaryDim, theta } = opts;
  const op = "rotary";
  if (!isCount(batch, 1) || !isCount(seq, 1) || !isCount(heads, 1) || !isCount(headDim, 1)) {
    throw new GpuError(
      op,
      `batch, seq, heads and headDim must be positive integers (${batch}, ${seq}, ${heads}, ${headDim})`,
    );
  }
  if (!isCount(rotaryDim, 2) || rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    throw new GpuError(op, `rotaryDim ${rotaryDim} must be even, ≥ 2 and ≤ headDim ${headDim}`);
  }
  if (!(theta > 0) || !Number.isFinite(theta)) throw new GpuError(op, `theta ${theta} must be positive`);
  if (x.rows !== batch * seq || x.rowSize !== heads * headDim) {
    throw new GpuError(
      op,
      `x [${x.shape}] is not [batch·seq, heads·headDim] = [${batch * seq}, ${heads * headDim}]`,
    );
  }
  const po = opts.positionOffset ?? 0;
  const offsets = typeof po === "number" ? new Array<number>(batch).fill(po) : po;
  if (offsets.length !== batch || offsets.some((o) => !isCount(o, 0))) {
    throw new GpuError(op, `positionOffset must be a non-negative integer or one per batch row (${batch})`);
  }
  const gpu = x.gpu;
  const maxPos = Math.max(...offsets) + seq - 1;
  const sc = opts.scaling;
  if (sc && !(sc.factor > 0 && Number.isFinite(sc.factor))) {
    throw new GpuError(op, `scaling factor ${sc.factor} must be a positive number`);
  }
  const tab = table(gpu, theta, rotaryDim, maxPos + 1, sc);
  const pipe = await gpu.pipeline({ family: "rotary", entry: "rotary", types: { ST: x.dtype } });
  const offBuf = gpu.createStorage(batch * 4, "rotary.offsets");
  gpu.write(offBuf, 0, Uint32Array.from(offsets));
  const half = rotaryDim / 2;
  for (const s of rowSegments([x])) {
    const n = s.rows * heads * half;
    gpu.dispatch(
      op,
      pipe,
      [offBuf, tab, x.chunks[s.at[0].chunk]],
      grid1d(n),
      words(
        n,
        s.row,
        s.at[0].offset,
        seq,
        heads,
        headDim,
        half,
        opts.interleaved ? 1 : 0,
        opts.inverse ? 1 : 0,
      ),
    );
  }
  gpu.release(offBuf);
}

/**
 * The backward pass of {@link applyRotary}: the gradient w.r.t. the rotary input is the inverse rotation
 * (the transpose of an orthogonal map) of the output gradient, applied to `grad` in place.
 */
export function rotaryBackward(grad: Tensor, opts: Omit<RotaryOptions, "inverse">): Promise<void> {
  return applyRotary(grad, { ...opts, inverse: true });
}
