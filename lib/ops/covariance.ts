/**
 * Covariance accumulation C += XᵀX on the GPU — the second-moment statistics ROME needs (C = E[k kᵀ]
 * over the keys of a corpus). C is f32 [d, d] and may be row-chunked (d = 16384 gives 1 GiB); X is
 * [n, d] in f16 or f32 (possibly row-chunked too). Accumulation is always f32: each dispatch sums at
 * most {@link COVARIANCE_ROWS_PER_DISPATCH} rows of X in registers and adds that partial sum to C.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowSegments, type Segment, words } from "./_chunks.ts";
import { gemmTexel, texelKernels } from "./matmul_texel.ts";

/** Rows of X one dispatch sums before adding into C (bounds the run time of one dispatch). */
export const COVARIANCE_ROWS_PER_DISPATCH = 2048;

/**
 * Which Gram kernel runs: `tiled` stages X in workgroup memory (64×64 tiles; the GPU design),
 * `direct` has each thread own a 16×16 block of C and read X straight from storage (no barriers);
 * `texel` runs the product as matmul's packed-texture kernel (lib/ops/matmul_texel.ts; much faster on
 * CPU adapters such as lavapipe); `auto` picks `texel` on CPU/fallback adapters, else `tiled`.
 */
export type GramKernel = "auto" | "tiled" | "direct" | "texel";

/** @internal The Gram kernel a choice resolves to on a device. */
export function resolveGramKernel(gpu: Gpu, kernel: GramKernel = "auto"): "tiled" | "direct" | "texel" {
  if (kernel !== "auto") return kernel;
  return gpu.isCpuAdapter ? (texelKernels(gpu) ? "texel" : "direct") : "tiled";
}

/**
 * @internal One block of a Gram update (shaders/covariance.wgsl `Gram`):
 * C[g, gc] += sign · Σ_{k<n} X[k, g − xshift] · X[k, gc − xshift] for g in [grow0, grow0 + rows),
 * gc in [c0, c0 + cols); C row g is stored at cOff + (g − grow0)·ldc, X row k at xOff + k·ldx with
 * `xcols` valid columns. mode 0: all; 1: skip tiles strictly below the diagonal; 2: lower part only.
 */
export interface GramBlock {
  n: number;
  ldx: number;
  xOff: number;
  xshift: number;
  xcols: number;
  grow0: number;
  rows: number;
  c0: number;
  cols: number;
  cOff: number;
  ldc: number;
  mode: 0 | 1 | 2;
  sign: number;
}

/** @internal A compiled Gram kernel and its output tile size. */
export interface GramPipeline {
  pipeline: GPUComputePipeline;
  tile: number;
}

/** @internal Compiles (cached) the `direct` or `tiled` Gram kernel for X stored as `xdtype`. */
export async function gramPipeline(
  gpu: Gpu,
  xdtype: DType,
  kernel: "tiled" | "direct",
): Promise<GramPipeline> {
  const direct = kernel === "direct";
  const pipeline = await gpu.pipeline({
    family: "covariance",
    entry: direct ? "gram_direct" : "gram_tiled",
    types: { TX: xdtype },
  });
  return { pipeline, tile: direct ? 128 : 64 };
}

/** @internal Records one Gram block update (see {@link GramBlock}). */
export function dispatchGram(
  gpu: Gpu,
  op: string,
  g: GramPipeline,
  x: GPUBuffer,
  c: GPUBuffer,
  b: GramBlock,
): void {
  if (b.rows === 0 || b.cols === 0) return;
  gpu.dispatch(
    op,
    g.pipeline,
    [x, c],
    [Math.ceil(b.cols / g.tile), Math.ceil(b.rows / g.tile)],
    words(
      b.n,
      b.ldx,
      b.xOff,
      b.xshift,
      b.grow0,
      b.rows,
      b.c0,
      b.cols,
      b.ldc,
      b.cOff,
      b.mode,
      b.xcols,
      { f: b.sign },
    ),
  );
}

/** Options of {@link covarianceAccumulate}. */
export interface CovarianceOptions {
  /**
   * Compute only the tiles on or above the diagonal and copy the upper triangle onto the lower one
   * (about half the arithmetic; C's lower triangle is overwritten, so C must be symmetric on entry —
   * it always is when built by this function). Default: on when X has ≥ 64 rows and d > 64.
   */
  symmetric?: boolean;
  /** Kernel choice (default `auto`), see {@link GramKernel}. */
  kernel?: GramKernel;
}

/**
 * C += XᵀX in place (f32 accumulation). `c` is f32 [d, d], `x` is [n, d] f16 or f32; either may be
 * row-chunked. Dispatches are recorded and run at the next flush or readback.
 */
export async function covarianceAccumulate(
  c: Tensor,
  x: Tensor,
  opts: CovarianceOptions = {},
): Promise<void> {
  const op = "covarianceAccumulate";
  if (c.gpu !== x.gpu) throw new GpuError(op, "tensors live on different devices");
  if (c.dtype !== "f32") throw new GpuError(op, `C must be f32, got ${c.dtype}`);
  if (c.shape.length !== 2 || c.shape[0] !== c.shape[1]) {
    throw new GpuError(op, `C must be square [d, d], got [${c.shape}]`);
  }
  const d = c.shape[0];
  if (x.shape.length !== 2 || x.shape[1] !== d) {
    throw new GpuError(op, `X must be [n, ${d}] to match C [${c.shape}], got [${x.shape}]`);
  }
  const n = x.shape[0];
  if (n === 0 || d === 0) return;
  const gpu = c.gpu;
  const symmetric = opts.symmetric ?? (n >= 64 && d > 64);
  const kernel = resolveGramKernel(gpu, opts.kernel);
  const cSegs = rowSegments([c]);
  if (kernel === "texel") {
    // C rows [cs.row, +cs.rows) += X[:, those columns]ᵀ · X, upper tiles only when symmetric
    for (const xs of rowSegments([x])) {
      const xb = x.chunks[xs.at[0].chunk], xOff = xs.at[0].offset;
      for (const cs of cSegs) {
        await gemmTexel(gpu, {
          a: { buf: xb, dtype: x.dtype, off: xOff + cs.row, ld: d, trans: true },
          b: { buf: xb, dtype: x.dtype, off: xOff, ld: d, trans: false },
          c: { buf: c.chunks[cs.at[0].chunk], dtype: "f32", off: cs.at[0].offset, ld: d },
          m: cs.rows,
          n: d,
          k: xs.rows,
          accumulate: true,
          triangle: symmetric ? { mode: 1, row0: cs.row, col0: 0 } : undefined,
          gramCol0: cs.row,
        }, op);
      }
    }
    if (symmetric) await mirrorUpper(c, cSegs);
    return;
  }
  const g = await gramPipeline(gpu, x.dtype, kernel);
  for (const xs of rowSegments([x])) {
    for (let r = 0; r < xs.rows; r += COVARIANCE_ROWS_PER_DISPATCH) {
      const rows = Math.min(COVARIANCE_ROWS_PER_DISPATCH, xs.rows - r);
      const xOff = xs.at[0].offset + r * d;
      for (const cs of cSegs) {
        dispatchGram(gpu, op, g, x.chunks[xs.at[0].chunk], c.chunks[cs.at[0].chunk], {
          n: rows,
          ldx: d,
          xOff,
          xshift: 0,
          xcols: d,
          grow0: cs.row,
          rows: cs.rows,
          c0: 0,
          cols: d,
          cOff: cs.at[0].offset,
          ldc: d,
          mode: symmetric ? 1 : 0,
          sign: 1,
        });
      }
    }
  }
  if (symmetric) await mirrorUpper(c, cSegs);
}

/** Copies C's upper triangle onto its lower triangle (C[i, j] = C[j, i] for j < i), chunk by chunk. */
async function mirrorUpper(c: Tensor, segs: Segment[]): Promise<void> {
  const gpu = c.gpu;
  const d = c.shape[0];
  const same = await gpu.pipeline({ family: "covariance", entry: "mirror_same", types: { TX: "f32" } });
  const cross = await gpu.pipeline({ family: "covariance", entry: "mirror_cross", types: { TX: "f32" } });
  for (let di = 0; di < segs.length; di++) {
    const dst = segs[di];
    for (let si = 0; si <= di; si++) {
      const src = segs[si];
      const u = words(d, dst.row, dst.rows, dst.at[0].offset, src.row, src.rows, src.at[0].offset);
      const grid: [number, number] = [Math.ceil(src.rows / 16), Math.ceil(dst.rows / 16)];
      const dstBuf = c.chunks[dst.at[0].chunk];
      if (si === di) gpu.dispatch("covarianceAccumulate.mirror", same, [null, dstBuf], grid, u);
      else gpu.dispatch("covarianceAccumulate.mirror", cross, [c.chunks[src.at[0].chunk], dstBuf], grid, u);
    }
  }
}
