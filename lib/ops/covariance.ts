/**
 * Covariance accumulation C += XᵀX on the GPU — the second-moment statistics ROME needs (C = E[k kᵀ]
 * over the keys of a corpus). C is f32 [d, d] and may be row-chunked (d = 16384 gives 1 GiB); X is
 * [n, d] in f16 or f32 (possibly row-chunked too). Accumulation is always f32: each dispatch sums at
 * most {@link MAX_ROWS_PER_DISPATCH} rows of X in registers and adds that partial sum to C.
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowSegments, type Segment, words } from "./_chunks.ts";

/** Rows of X one dispatch sums before adding into C (bounds the run time of one dispatch). */
export const MAX_ROWS_PER_DISPATCH = 2048;

const TILE = 64;

/** Options of {@link covarianceAccumulate}. */
export interface CovarianceOptions {
  /**
   * Compute only the tiles on or above the diagonal and copy the upper triangle onto the lower one
   * (about half the arithmetic; C's lower triangle is overwritten, so C must be symmetric on entry —
   * it always is when built by this function). Default: on when X has ≥ 64 rows and d > 64.
   */
  symmetric?: boolean;
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
  const symmetric = opts.symmetric ?? (n >= 64 && d > TILE);
  const pipe = await gpu.pipeline({ family: "covariance", entry: "accumulate", types: { TX: x.dtype } });
  const cSegs = rowSegments([c]);
  for (const xs of rowSegments([x])) {
    for (let r = 0; r < xs.rows; r += MAX_ROWS_PER_DISPATCH) {
      const rows = Math.min(MAX_ROWS_PER_DISPATCH, xs.rows - r);
      const xOff = xs.at[0].offset + r * d;
      for (const cs of cSegs) {
        gpu.dispatch(
          op,
          pipe,
          [x.chunks[xs.at[0].chunk], c.chunks[cs.at[0].chunk]],
          [Math.ceil(d / TILE), Math.ceil(cs.rows / TILE)],
          words(rows, d, xOff, cs.at[0].offset, cs.row, cs.rows, symmetric ? 1 : 0),
        );
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
