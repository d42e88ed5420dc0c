/**
 * Matrix–vector products with a weight matrix in either layout — most of the editing math is of this
 * form (keys, values, projections of single vectors).
 *
 * {@link gemv} applies the layer's linear map to a vector, y = W x in the layer's sense (what
 * `linear(x, W)` gives for one row x); {@link gemvT} applies the transposed map, z = Wᵀ v (what
 * `linearT(v, W)` gives):
 *
 * | layout   | W stored   | gemv(W, x): y[o]        | gemvT(W, v): z[i]       |
 * |----------|------------|-------------------------|-------------------------|
 * | `out_in` | [out, in]  | Σ_i W[o, i] · x[i]      | Σ_o W[o, i] · v[o]      |
 * | `in_out` | [in, out]  | Σ_i W[i, o] · x[i]      | Σ_o W[i, o] · v[o]      |
 *
 * A sum along W's stored rows runs the `gemv_rows` kernel (one workgroup per 4 rows with a workgroup
 * reduction); a sum down W's columns runs `gemv_cols` (coalesced vec4 walk down 64 columns per workgroup).
 * W may be chunked along dim 0: for a row sum each chunk yields a slice of the result, for a column walk
 * each chunk is a K-slice whose partial sums are accumulated (in an f32 scratch when the result is f16).
 * Math is f32 for every storage type.
 * @module
 */
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { words } from "./_chunks.ts";
import { convertInto, defaultOutDtype, vec4Binding, type WeightLayout } from "./matmul.ts";

/** Options for {@link gemv} and {@link gemvT}. */
export interface GemvOptions {
  /** How W is stored: `out_in` = [out, in] (HF nn.Linear), `in_out` = [in, out] (GPT-2 Conv1D). */
  layout: WeightLayout;
  /** Write the result here (shape [len] or [1, len], like the input vector). */
  out?: Tensor;
  /** Storage type of a new result: default f16 when W and x are both f16, else f32. */
  outDtype?: DType;
  /**
   * Thread access pattern: `coalesced` (consecutive threads read consecutive quads; for GPUs),
   * `contiguous` (each thread streams its own contiguous range; ~3x faster on CPU adapters), or `auto`
   * (default: contiguous on CPU adapters).
   */
  access?: "auto" | "coalesced" | "contiguous";
}

const MAX_GROUPS = 65535;

function grid(groups: number): [number, number] {
  if (groups <= MAX_GROUPS) return [groups, 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y];
}

function vectorLength(op: string, x: Tensor, what: string): number {
  if (x.shape.length === 1) return x.shape[0];
  if (x.shape.length === 2 && x.shape[0] === 1) return x.shape[1];
  throw new GpuError(op, `${what} must be [n] or [1, n], got [${x.shape}]`);
}

/**
 * y = the layer's map applied to x (see the module table): out_in y[o] = Σ_i W[o,i]·x[i]; in_out
 * y[o] = Σ_i W[i,o]·x[i]. x is [in] or [1, in]; y is [out] or [1, out] to match.
 */
export function gemv(w: Tensor, x: Tensor, opts: GemvOptions): Promise<Tensor> {
  return gemvAny("gemv", w, x, opts, opts.layout === "out_in");
}

/**
 * z = the transposed map applied to v: out_in z[i] = Σ_o W[o,i]·v[o]; in_out z[i] = Σ_o W[i,o]·v[o].
 * v is [out] or [1, out]; z is [in] or [1, in] to match.
 */
export function gemvT(w: Tensor, v: Tensor, opts: GemvOptions): Promise<Tensor> {
  return gemvAny("gemvT", w, v, opts, opts.layout === "in_out");
}

async function gemvAny(
  op: string,
  w: Tensor,
  x: Tensor,
  opts: GemvOptions,
  rowSum: boolean,
): Promise<Tensor> {
  if (opts.layout !== "out_in" && opts.layout !== "in_out") {
    throw new GpuError(op, `layout must be "out_in" or "in_out", got ${JSON.stringify(opts.layout)}`);
  }
  if (w.shape.length !== 2) throw new GpuError(op, `W must be 2-D, got [${w.shape}]`);
  if (w.gpu !== x.gpu || (opts.out && opts.out.gpu !== w.gpu)) {
    throw new GpuError(op, "tensors live on different devices");
  }
  const [rows, cols] = w.shape;
  const len = vectorLength(op, x, "x");
  const need = rowSum ? cols : rows;
  if (len !== need) {
    throw new GpuError(op, `vector has ${len} values, W [${w.shape}] (${opts.layout}) needs ${need}`);
  }
  const outLen = rowSum ? rows : cols;
  const outShape = x.shape.length === 1 ? [outLen] : [1, outLen];
  let y: Tensor;
  if (opts.out) {
    y = opts.out;
    if (y.size !== outLen || y.shape.length > 2 || (y.shape.length === 2 && y.shape[0] !== 1)) {
      throw new GpuError(op, `out has shape [${y.shape}], expected [${outShape}]`);
    }
    if (y.chunks.some((c) => w.chunks.includes(c) || x.chunks.includes(c))) {
      throw new GpuError(op, "the output must not share buffers with an input");
    }
  } else {
    y = Tensor.empty(w.gpu, outShape, opts.outDtype ?? defaultOutDtype(w.dtype, x.dtype), { name: op });
  }
  if (outLen === 0) return y;
  await gemvInto(op, w, x, y, rowSum, opts.access ?? "auto");
  return y;
}

/** Records y = (row sums or column walk of W) against x, over W's chunks. */
async function gemvInto(
  op: string,
  w: Tensor,
  x: Tensor,
  y: Tensor,
  rowSum: boolean,
  access: "auto" | "coalesced" | "contiguous",
): Promise<void> {
  const gpu = w.gpu;
  const [rows, cols] = w.shape;
  const chunks = w.chunks.length;
  const scratch = !rowSum && chunks > 1 && y.dtype === "f16";
  const target = scratch ? Tensor.empty(gpu, y.shape, "f32", { name: `${op}:f32` }) : y;
  const xbuf = x.buffer, ybuf = target.buffer;
  const entry = rowSum ? "gemv_rows" : "gemv_cols";
  const vecW = cols % 4 === 0;
  const contig = access === "auto" ? gpu.isCpuAdapter : access === "contiguous";
  for (let i = 0; i < chunks; i++) {
    const r0 = i * w.rowsPerChunk, n = w.chunkRows(i);
    if (n <= 0) continue;
    // rows: chunk i gives y[r0 .. r0+n); cols: chunk i is the K-slice x[r0 .. r0+n), summed into y
    const xOff = rowSum ? 0 : r0;
    const accum = !rowSum && i > 0;
    const pipe = await gpu.pipeline({
      family: "gemv",
      entry,
      types: { TW: w.dtype, TX: x.dtype, TY: target.dtype },
      constants: { VEC_W: +vecW, VEC_X: +(xOff % 4 === 0), ACCUM: +accum, CONTIG: +contig },
    });
    const groups = rowSum ? Math.ceil(n / 4) : Math.ceil(cols / 256);
    gpu.dispatch(
      op,
      pipe,
      [
        w.chunks[i],
        vec4Binding(gpu, w.chunks[i], w.dtype),
        xbuf,
        vec4Binding(gpu, xbuf, x.dtype),
        ybuf,
      ],
      grid(groups),
      words(n, cols, 0, cols, xOff, rowSum ? r0 : 0, { f: 1 }, 0),
    );
  }
  if (rows === 0 && !rowSum) {
    // an empty sum: y = 0
    gpu.clear(ybuf);
  }
  if (scratch) {
    await convertInto(target, y, op);
    target.dispose();
  }
}
