/**
 * Row gathers and scatters: token/position embedding lookups on (possibly row-chunked) tables, reading
 * activations at chosen token positions (ROME keys), adding a vector at chosen rows (ROME's δ hook) and
 * summing chosen rows (the gradient of δ). Any f32/f16 storage mix; math is f32.
 * @module
 */
import type { DType } from "../gpu/dtype.ts";
import type { Gpu } from "../gpu/device.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { chunkOf, grid1d, words } from "./_chunks.ts";

/** Options of {@link embedding}. */
export interface EmbeddingOptions {
  /** Storage type of a new output (default: the table's). Ignored with `accumulate`. */
  outDtype?: DType;
  /** Add the gathered rows into this `[T, d]` tensor (in place) instead of returning a new one. */
  accumulate?: Tensor;
}

/** Options of {@link gatherRows}. */
export interface GatherOptions {
  /** Storage type of the output (default f32). */
  outDtype?: DType;
}

const TYPES = ["TT", "TO", "TV", "TX"] as const;

function pipeline(gpu: Gpu, entry: string, types: Partial<Record<(typeof TYPES)[number], DType>>) {
  const all: Record<string, DType> = {};
  for (const k of TYPES) all[k] = types[k] ?? "f32";
  return gpu.pipeline({ family: "embedding", entry, types: all });
}

function check2d(op: string, t: Tensor, what: string): number {
  if (t.shape.length !== 2) throw new GpuError(op, `${what} must be 2-D [rows, d], got [${t.shape}]`);
  return t.shape[1];
}

function checkRows(op: string, rows: ArrayLike<number>, limit: number, what: string): void {
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!Number.isInteger(r) || r < 0 || r >= limit) {
      throw new GpuError(op, `${what}[${i}] = ${r} is out of range [0, ${limit})`);
    }
  }
}

/** Uploads u32 words into a pooled storage buffer (release it after the dispatch is recorded). */
function uploadU32(gpu: Gpu, data: number[], op: string): GPUBuffer {
  const buf = gpu.createStorage(Math.max(1, data.length) * 4, op);
  gpu.write(buf, 0, Uint32Array.from(data));
  return buf;
}

/**
 * out[outRows[t]] (=|+=) src[srcRows[t]] for t in [0, n), walking the row chunks of both tensors
 * (`outRows` defaults to t). Output rows must be distinct.
 */
async function gatherInto(
  op: string,
  src: Tensor,
  srcRows: ArrayLike<number>,
  out: Tensor,
  acc: boolean,
  outRows?: ArrayLike<number>,
): Promise<void> {
  const gpu = src.gpu;
  const d = src.shape[1];
  const groups = new Map<string, { s: number; o: number; pairs: number[] }>();
  for (let t = 0; t < srcRows.length; t++) {
    const ot = outRows ? outRows[t] : t;
    const a = chunkOf(src, srcRows[t]), b = chunkOf(out, ot);
    const key = `${a.chunk},${b.chunk}`;
    let g = groups.get(key);
    if (!g) groups.set(key, g = { s: a.chunk, o: b.chunk, pairs: [] });
    g.pairs.push(a.local, b.local);
  }
  const pipe = await pipeline(gpu, "gather", { TT: src.dtype, TO: out.dtype });
  for (const g of groups.values()) {
    const n = g.pairs.length / 2;
    const buf = uploadU32(gpu, g.pairs, op);
    gpu.dispatch(op, pipe, [src.chunks[g.s], buf, out.chunks[g.o]], grid1d(n, 1), words(n, d, acc ? 1 : 0));
    gpu.release(buf);
  }
}

/**
 * `dst[rows[i]] += src[i]` for the rows of a `[n, d]` tensor into a `[N, d]` tensor, in place (the
 * backward of {@link gatherRows}). Rows must be distinct.
 */
export async function scatterAddRows(dst: Tensor, src: Tensor, rows: Uint32Array): Promise<void> {
  const op = "scatterAddRows";
  const d = check2d(op, dst, "dst");
  if (check2d(op, src, "src") !== d || src.shape[0] !== rows.length) {
    throw new GpuError(op, `src must be [${rows.length}, ${d}], got [${src.shape}]`);
  }
  if (src.gpu !== dst.gpu) throw new GpuError(op, "src lives on another device");
  checkRows(op, rows, dst.shape[0], "rows");
  if (new Set(rows).size !== rows.length) throw new GpuError(op, "rows must be distinct");
  await gatherInto(op, src, Uint32Array.from({ length: rows.length }, (_, i) => i), dst, true, rows);
}

/**
 * `dst[rows[i]] = src[i]` for the rows of a `[n, d]` tensor into a `[N, d]` tensor, in place (overwrites;
 * causal tracing restores clean activations with it). Rows must be distinct. Values are converted to
 * `dst`'s storage type once (exact when both are the same type).
 */
export async function scatterRows(dst: Tensor, src: Tensor, rows: Uint32Array): Promise<void> {
  const op = "scatterRows";
  const d = check2d(op, dst, "dst");
  if (check2d(op, src, "src") !== d || src.shape[0] !== rows.length) {
    throw new GpuError(op, `src must be [${rows.length}, ${d}], got [${src.shape}]`);
  }
  if (src.gpu !== dst.gpu) throw new GpuError(op, "src lives on another device");
  if (src === dst) throw new GpuError(op, "src and dst must be different tensors");
  checkRows(op, rows, dst.shape[0], "rows");
  if (new Set(rows).size !== rows.length) throw new GpuError(op, "rows must be distinct");
  await gatherInto(op, src, Uint32Array.from({ length: rows.length }, (_, i) => i), dst, false, rows);
}

/**
 * Embedding lookup: `out[t] = table[ids[t]]` for a `[V, d]` table that may be row-chunked (a 7B model's
 * vocab table is 250–500 MB). Also used for learned position tables (GPT-2's wpe) with position ids.
 * With `accumulate`, adds into that `[T, d]` tensor and returns it.
 */
export async function embedding(
  table: Tensor,
  ids: Uint32Array,
  opts: EmbeddingOptions = {},
): Promise<Tensor> {
  const op = "embedding";
  const d = check2d(op, table, "table");
  checkRows(op, ids, table.shape[0], "ids");
  const acc = opts.accumulate;
  if (acc) {
    if (acc.shape.length !== 2 || acc.shape[0] !== ids.length || acc.shape[1] !== d) {
      throw new GpuError(op, `accumulate must be [${ids.length}, ${d}], got [${acc.shape}]`);
    }
    if (acc.gpu !== table.gpu) throw new GpuError(op, "accumulate lives on another device");
  }
  const out = acc ?? Tensor.empty(table.gpu, [ids.length, d], opts.outDtype ?? table.dtype, { name: op });
  await gatherInto(op, table, ids, out, !!acc);
  return out;
}

/** Copies the listed rows of a `[N, d]` tensor into a new `[n, d]` tensor (f32 by default). */
export async function gatherRows(x: Tensor, rows: Uint32Array, opts: GatherOptions = {}): Promise<Tensor> {
  const op = "gatherRows";
  const d = check2d(op, x, "x");
  checkRows(op, rows, x.shape[0], "rows");
  const out = Tensor.empty(x.gpu, [rows.length, d], opts.outDtype ?? "f32", { name: op });
  await gatherInto(op, x, rows, out, false);
  return out;
}

/**
 * `x[r] += v` for each listed row r of a `[N, d]` tensor, in place (ROME's δ hook). A row listed k times
 * gets `k·v` (added in one rounding). `v` is a `[d]` vector of any dtype.
 */
export async function addToRows(x: Tensor, v: Tensor, rows: Uint32Array): Promise<void> {
  const op = "addToRows";
  const d = check2d(op, x, "x");
  if (v.size !== d) throw new GpuError(op, `v must have ${d} values, got [${v.shape}]`);
  if (v.gpu !== x.gpu) throw new GpuError(op, "v lives on another device");
  checkRows(op, rows, x.shape[0], "rows");
  const count = new Map<number, number>();
  for (const r of rows) count.set(r, (count.get(r) ?? 0) + 1);
  const groups = new Map<number, number[]>();
  for (const [r, k] of count) {
    const c = Math.floor(r / x.rowsPerChunk);
    let g = groups.get(c);
    if (!g) groups.set(c, g = []);
    g.push(r - c * x.rowsPerChunk, k);
  }
  const gpu = x.gpu;
  const pipe = await pipeline(gpu, "add_rows", { TV: v.dtype, TX: x.dtype });
  for (const [c, pairs] of groups) {
    const n = pairs.length / 2;
    const buf = uploadU32(gpu, pairs, op);
    gpu.dispatch(op, pipe, [null, buf, null, v.buffer, x.chunks[c]], grid1d(n, 1), words(n, d, 0));
    gpu.release(buf);
  }
}

/** `Σ_r x[r]` over the listed rows (repeats count again) of a `[N, d]` tensor, as a new `[d]` f32 tensor. */
export async function sumRows(x: Tensor, rows: Uint32Array): Promise<Tensor> {
  const op = "sumRows";
  const d = check2d(op, x, "x");
  checkRows(op, rows, x.shape[0], "rows");
  const gpu = x.gpu;
  const out = Tensor.zeros(gpu, [d], "f32", { name: op });
  const groups = new Map<number, number[]>();
  for (const r of rows) {
    const c = Math.floor(r / x.rowsPerChunk);
    let g = groups.get(c);
    if (!g) groups.set(c, g = []);
    g.push(r - c * x.rowsPerChunk);
  }
  const pipe = await pipeline(gpu, "sum_rows", { TT: x.dtype, TO: "f32" });
  for (const [c, local] of groups) {
    const buf = uploadU32(gpu, local, op);
    gpu.dispatch(op, pipe, [x.chunks[c], buf, out.buffer], grid1d(d), words(local.length, d, 0));
    gpu.release(buf);
  }
  return out;
}
