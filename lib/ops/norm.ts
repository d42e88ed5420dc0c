/**
 * LayerNorm (GPT-2, GPT-J) and RMSNorm (Llama, Mistral) over the last dim of `[T, d]` activations, and
 * their input gradients for backprop through a frozen model (no weight gradients). On GPUs one workgroup
 * per row with a workgroup reduction; on CPU adapters (lavapipe), where every workgroup barrier is costly,
 * one invocation per row without barriers (see {@link NormKernel}). f32 math for f32 and f16 storage;
 * row-chunked activations are supported.
 * @module
 */
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { grid1d, rowSegments, words } from "./_chunks.ts";

/**
 * Which kernel runs a norm: `workgroup`: one 256-thread workgroup per row with shared-memory tree
 * reductions (the GPU design); `thread`: one invocation per row walking it serially with 8 interleaved
 * partial sums, no barriers (fastest on CPU adapters such as lavapipe); `auto` (default): `thread` on CPU
 * adapters, else `workgroup`.
 */
export type NormKernel = "auto" | "workgroup" | "thread";

/** Options of the forward norms. */
export interface NormOptions {
  /** Storage type of the output (default: the input's). */
  outDtype?: DType;
  /** Kernel choice (default `auto`); see {@link NormKernel}. */
  kernel?: NormKernel;
}

/** Options of the norm backward ops. */
export interface NormBackwardOptions {
  /** Storage type of dx (default f32). */
  outDtype?: DType;
  /** Kernel choice (default `auto`); see {@link NormKernel}. */
  kernel?: NormKernel;
}

/** Rows per workgroup of the one-invocation-per-row entries (`*_tpr` in shaders/norm.wgsl). */
const TPR_ROWS = 64;

function check(op: string, x: Tensor, w: Tensor, b: Tensor | null, dy: Tensor | null): number {
  if (x.shape.length !== 2) throw new GpuError(op, `x must be [T, d], got [${x.shape}]`);
  const d = x.shape[1];
  for (const [name, t] of [["w", w], ["b", b]] as const) {
    if (!t) continue;
    if (t.size !== d || t.shape.length !== 1) {
      throw new GpuError(op, `${name} must be [${d}], got [${t.shape}]`);
    }
  }
  if (dy && (dy.shape.length !== 2 || dy.shape[0] !== x.shape[0] || dy.shape[1] !== d)) {
    throw new GpuError(op, `dy must be [${x.shape}], got [${dy.shape}]`);
  }
  for (const t of [w, b, dy]) {
    if (t && t.gpu !== x.gpu) {
      throw new GpuError(op, `tensors live on different devices (${x.gpu.label}, ${t.gpu.label})`);
    }
  }
  return d;
}

async function run(
  op: string,
  entry: string,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  dy: Tensor | null,
  out: Tensor,
  eps: number,
  kernel: NormKernel = "auto",
): Promise<Tensor> {
  if (!(eps >= 0)) throw new GpuError(op, `eps must be ≥ 0, got ${eps}`);
  if (!["auto", "workgroup", "thread"].includes(kernel)) throw new GpuError(op, `unknown kernel ${kernel}`);
  const gpu = x.gpu;
  const perThread = kernel === "thread" || (kernel === "auto" && gpu.isCpuAdapter);
  const d = x.shape[1];
  const fwd = dy === null;
  const types: Record<string, DType> = {
    TX: x.dtype,
    TW: w.dtype,
    TB: (b ?? w).dtype,
    TY: fwd ? out.dtype : "f32",
    TG: dy ? dy.dtype : "f32",
    TD: fwd ? "f32" : out.dtype,
  };
  const pipe = await gpu.pipeline({ family: "norm", entry: perThread ? `${entry}_tpr` : entry, types });
  const tensors = dy ? [x, dy, out] : [x, out];
  for (const s of rowSegments(tensors)) {
    const xc = x.chunks[s.at[0].chunk];
    const oc = out.chunks[s.at[tensors.length - 1].chunk];
    const buffers = fwd
      ? [xc, w.buffer, b ? b.buffer : entry === "layer_norm" ? w.buffer : null, oc]
      : [xc, w.buffer, null, null, dy!.chunks[s.at[1].chunk], oc];
    gpu.dispatch(
      op,
      pipe,
      buffers,
      perThread ? grid1d(s.rows, TPR_ROWS) : grid1d(s.rows, 1),
      words(
        s.rows,
        d,
        s.at[0].offset,
        s.at[tensors.length - 1].offset,
        dy ? s.at[1].offset : 0,
        b ? 1 : 0,
        { f: eps },
      ),
    );
  }
  return out;
}

/**
 * LayerNorm over the last dim (PyTorch semantics: biased variance, eps inside the square root):
 * `y = (x − mean) / sqrt(var + eps) · w + b`. `b` may be null (no bias). Returns a new `[T, d]` tensor.
 */
export async function layerNorm(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  eps: number,
  opts: NormOptions = {},
): Promise<Tensor> {
  check("layerNorm", x, w, b, null);
  const y = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? x.dtype, { name: "layerNorm" });
  return await run("layerNorm", "layer_norm", x, w, b, null, y, eps, opts.kernel);
}

/**
 * Gradient of {@link layerNorm} w.r.t. x given the upstream gradient dy (the bias does not enter):
 * `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·w`. Returns a new `[T, d]` tensor (f32 by default).
 */
export async function layerNormBackward(
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  eps: number,
  opts: NormBackwardOptions = {},
): Promise<Tensor> {
  check("layerNormBackward", x, w, null, dy);
  const dx = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? "f32", { name: "layerNormBackward" });
  return await run("layerNormBackward", "layer_norm_bwd", x, w, null, dy, dx, eps, opts.kernel);
}

/** RMSNorm (Llama/Mistral): `y = w · x · rsqrt(mean(x²) + eps)`. Returns a new `[T, d]` tensor. */
export async function rmsNorm(x: Tensor, w: Tensor, eps: number, opts: NormOptions = {}): Promise<Tensor> {
  check("rmsNorm", x, w, null, null);
  const y = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? x.dtype, { name: "rmsNorm" });
  return await run("rmsNorm", "rms_norm", x, w, null, null, y, eps, opts.kernel);
}

/**
 * Gradient of {@link rmsNorm} w.r.t. x: `dx = r·g − x·r³·mean(g·x)` with `g = dy·w` and
 * `r = rsqrt(mean(x²) + eps)`. Returns a new `[T, d]` tensor (f32 by default).
 */
export async function rmsNormBackward(
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  eps: number,
  opts: NormBackwardOptions = {},
): Promise<Tensor> {
  check("rmsNormBackward", x, w, null, dy);
  const dx = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? "f32", { name: "rmsNormBackward" });
  return await run("rmsNormBackward", "rms_norm_bwd", x, w, null, dy, dx, eps, opts.kernel);
}
