/**
 * Rank-one update of a weight matrix in place — the write step of ROME / R-ROME.
 *
 * ROME's naming: the key-side vector `u` has the length of the edited module's *input* (d_in, the MLP
 * down-projection's input dim, e.g. d_ff) and the value-side vector `v` the length of its *output*
 * (d_out, e.g. d_model). The update is ΔW = α · v uᵀ as a linear map from inputs to outputs; how it is
 * laid out in memory depends on how the checkpoint stores W:
 *
 * | layout     | stored W          | used by                     | update                        |
 * |------------|-------------------|-----------------------------|-------------------------------|
 * | `"in_out"` | [d_in, d_out]     | GPT-2 `Conv1D` (y = x W)    | W[i, o] += α · u[i] · v[o]    |
 * | `"out_in"` | [d_out, d_in]     | `nn.Linear` (y = W x)       | W[o, i] += α · v[o] · u[i]    |
 *
 * W may be f16 or f32 and may be row-chunked (dim 0); u and v are f32. The math is f32 (`fma`) with one
 * rounding to W's storage type when writing.
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { rowSegments, words } from "./_chunks.ts";

/** Options of {@link outerUpdate}. */
export interface OuterUpdateOptions {
  /**
   * How W is stored: `"in_out"` = [d_in, d_out] (GPT-2 Conv1D), `"out_in"` = [d_out, d_in]
   * (nn.Linear). See the module docs.
   */
  layout: "out_in" | "in_out";
}

/** Rows each workgroup walks (the WGSL constant ROWS). */
const ROWS_PER_GROUP = 16;
const MAX_ROWS_PER_DISPATCH = 65535 * ROWS_PER_GROUP;

/**
 * W += α · (rank-one) in place, with ROME's vectors: `u` (key side, length d_in) and `v` (value side,
 * length d_out). For `layout: "in_out"` W is [d_in, d_out] and W[i,o] += α·u[i]·v[o]; for
 * `layout: "out_in"` W is [d_out, d_in] and W[o,i] += α·v[o]·u[i]. W is f16 or f32 (math in f32, one
 * rounding when storing), u and v are f32 and unchunked; W may be chunked along dim 0.
 * The dispatches are recorded; they run at the next flush or readback.
 */
export async function outerUpdate(
  w: Tensor,
  u: Tensor,
  v: Tensor,
  alpha: number,
  opts: OuterUpdateOptions,
): Promise<void> {
  const op = "outerUpdate";
  const layout = opts?.layout;
  if (layout !== "in_out" && layout !== "out_in") {
    throw new GpuError(op, `layout must be "in_out" or "out_in", got ${JSON.stringify(layout)}`);
  }
  for (const t of [u, v]) {
    if (t.gpu !== w.gpu) throw new GpuError(op, `tensors live on different devices`);
    if (t.dtype !== "f32") throw new GpuError(op, `${t.name}: u and v must be f32, got ${t.dtype}`);
  }
  if (w.shape.length !== 2) throw new GpuError(op, `W must be 2-D, got shape [${w.shape}]`);
  if (!Number.isFinite(alpha)) throw new GpuError(op, `alpha must be finite, got ${alpha}`);
  // rows of W index `a`, columns index `b`
  const [a, b] = layout === "in_out" ? [u, v] : [v, u];
  const [rows, cols] = w.shape;
  if (a.size !== rows || b.size !== cols) {
    const [din, dout] = layout === "in_out" ? [rows, cols] : [cols, rows];
    throw new GpuError(
      op,
      `layout "${layout}" with W [${w.shape}] needs u of length d_in = ${din} and v of length d_out = ${dout}; ` +
        `got u [${u.shape}], v [${v.shape}]`,
    );
  }
  if (rows === 0 || cols === 0) return;
  const gpu = w.gpu;
  const pipe = await gpu.pipeline({ family: "outer", entry: "rank_one", types: { TW: w.dtype } });
  const groupsX = Math.ceil(cols / 256);
  for (const s of rowSegments([w])) {
    for (let r = 0; r < s.rows; r += MAX_ROWS_PER_DISPATCH) {
      const n = Math.min(MAX_ROWS_PER_DISPATCH, s.rows - r);
      gpu.dispatch(
        op,
        pipe,
        [w.chunks[s.at[0].chunk], a.buffer, b.buffer],
        [groupsX, Math.ceil(n / ROWS_PER_GROUP)],
        words(cols, n, s.row + r, s.at[0].offset + r * cols, { f: alpha }),
      );
    }
  }
}

/**
 * W += α · Σ_k u_k v_kᵀ in place (a rank-`k` update, MEMIT's ΔW = R Kᵀ(…)⁻¹ written as its factors):
 * `u` is [k, d_in] and `v` is [k, d_out] (f32, unchunked), mapped onto W's layout as in
 * {@link outerUpdate}. The sum over k is accumulated in f32 and W is rounded once. W may be chunked.
 */
export async function lowRankUpdate(
  w: Tensor,
  u: Tensor,
  v: Tensor,
  alpha: number,
  opts: OuterUpdateOptions,
): Promise<void> {
  const op = "lowRankUpdate";
  const layout = opts?.layout;
  if (layout !== "in_out" && layout !== "out_in") {
    throw new GpuError(op, `layout must be "in_out" or "out_in", got ${JSON.stringify(layout)}`);
  }
  for (const t of [u, v]) {
    if (t.gpu !== w.gpu) throw new GpuError(op, `tensors live on different devices`);
    if (t.dtype !== "f32") throw new GpuError(op, `${t.name}: u and v must be f32, got ${t.dtype}`);
    if (t.shape.length !== 2) throw new GpuError(op, `${t.name}: expected [rank, d], got [${t.shape}]`);
  }
  if (w.shape.length !== 2) throw new GpuError(op, `W must be 2-D, got shape [${w.shape}]`);
  if (!Number.isFinite(alpha)) throw new GpuError(op, `alpha must be finite, got ${alpha}`);
  const rank = u.shape[0];
  if (v.shape[0] !== rank) throw new GpuError(op, `u [${u.shape}] and v [${v.shape}] differ in rank`);
  const [a, b] = layout === "in_out" ? [u, v] : [v, u];
  const [rows, cols] = w.shape;
  if (a.shape[1] !== rows || b.shape[1] !== cols) {
    const [din, dout] = layout === "in_out" ? [rows, cols] : [cols, rows];
    throw new GpuError(
      op,
      `layout "${layout}" with W [${w.shape}] needs u [rank, ${din}] and v [rank, ${dout}]; ` +
        `got u [${u.shape}], v [${v.shape}]`,
    );
  }
  if (rows === 0 || cols === 0 || rank === 0) return;
  const gpu = w.gpu;
  const pipe = await gpu.pipeline({ family: "outer", entry: "low_rank", types: { TW: w.dtype } });
  const groupsX = Math.ceil(cols / 256);
  for (const s of rowSegments([w])) {
    for (let r = 0; r < s.rows; r += MAX_ROWS_PER_DISPATCH) {
      const n = Math.min(MAX_ROWS_PER_DISPATCH, s.rows - r);
      gpu.dispatch(
        op,
        pipe,
        [w.chunks[s.at[0].chunk], a.buffer, b.buffer],
        [groupsX, Math.ceil(n / ROWS_PER_GROUP)],
        words(cols, n, s.row + r, s.at[0].offset + r * cols, { f: alpha }, rows, rank),
      );
    }
  }
}
