/**
 * Causal multi-head attention on the GPU, forward and backward (activation gradients), with grouped-query
 * heads (query head h uses kv head ⌊h / (H/KV)⌋), right padding (`kvLengths`), query offsets (KV-cache
 * decoding) and Mistral's sliding window; plus {@link KvCache} for greedy generation.
 *
 * Layout: q [B·Sq, H·hd], k and v [B·Skv, KV·hd], row = batch row · S + position; f32 or f16 storage each,
 * f32 math. Query i of batch row b stands at absolute position p = queryOffset[b] + i and sees key j iff
 * j < kvLengths[b], j ≤ p and, with a window, j > p − window. Scores are scale·q·k (scale 1/√hd by
 * default). A query that sees no key (a padded row with kvLength 0, say) outputs zeros, never NaN.
 *
 * Kernels (shaders/attention.wgsl), two designs (see {@link AttentionKernel}). `tiled` (GPUs): the forward is
 * one workgroup per (16 queries, head, batch row) running an online softmax over 8-key tiles of only the
 * keys its block can see (causal and window bounds), so memory is O(S) and long sequences work. The
 * backward recomputes the forward's logsumexp, computes D = rowsum(dOut ∘ out), then dq per query block
 * and dk/dv per key block (the latter summing over the query heads of its kv head: no atomics).
 * head_dim ≤ 256 (GPT-J); workgroup memory ≤ 16 KiB. Each design compiles one pipeline variant per
 * head_dim class ({@link attentionTiles}): head_dim ≤ 128 keeps the original tiles (16 × 8 forward, 8 × 8
 * backward), 129…256 halves the rows per tile so the doubled rows still fit. `row` (CPU adapters): one
 * invocation per query row (forward; backward: logsumexp, D and dq in one kernel) or per key row (dk/dv),
 * without workgroup memory or barriers: two dispatches for the backward instead of four. On llvmpipe, whose
 * loops stop after 65,535 iterations per shader invocation, a call too long for the row kernels runs the
 * tiled ones, and one too long for both is an error (lib/ops/attention_budget.ts). `texel` (CPU adapters'
 * default forward): the row forward reading k and v from textures packed just before it.
 *
 * Row-chunked tensors work: runs of batch rows lying in one chunk of every operand are dispatched together;
 * a batch row that straddles a chunk boundary is gathered into a temporary buffer (and outputs scattered
 * back).
 * @module
 */
import { type Gpu, LLVMPIPE_LOOP_LIMIT } from "../gpu/device.ts";
import { type DType, dtypeBytes } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { chunkOf, grid1d, rowRuns, words } from "./_chunks.ts";
import { attentionLoopIterations, type LoopShape } from "./attention_budget.ts";
import { packTexels, texelKernels } from "./matmul_texel.ts";

/** Largest head_dim the kernels support. */
export const ATTENTION_MAX_HEAD_DIM = 256;

/** Tile sizes of one pipeline variant (u32 constants of shaders/attention.wgsl). */
export interface AttentionTiles {
  /** The largest head_dim of the variant (private and workgroup row length). */
  HDM: number;
  /** Forward (tiled): queries per workgroup. */
  FQ: number;
  /** Forward (tiled): keys per online-softmax step. */
  FK: number;
  /** Backward (tiled): queries (keys) per tile. */
  BT: number;
}

/**
 * The pipeline variant for a head_dim: ≤ 128 → the 128-wide tiles (unchanged from before 256 existed, so
 * small heads pay nothing), else the 256-wide ones with half the rows per tile (workgroup memory: forward
 * 4·(FQ + FK)·HDM + small = 12.4 KiB, backward 3·4·BT·HDM + small = 12.2 KiB in both variants).
 */
export function attentionTiles(headDim: number): AttentionTiles {
  return headDim <= 128 ? { HDM: 128, FQ: 16, FK: 8, BT: 8 } : { HDM: 256, FQ: 8, FK: 4, BT: 4 };
}

/**
 * Which kernels run attention: `tiled`: workgroups of 64 threads sharing q/k/v tiles in workgroup memory
 * (the GPU design); `row`: one invocation per query (key) row walking its keys (queries) serially, no
 * barriers (CPU adapters such as lavapipe); `texel`: the `row` design whose forward first packs k and v into
 * rgba32float textures (lib/ops/matmul_texel.ts) and reads them as read-only storage textures (several
 * times cheaper than storage-buffer reads on lavapipe; the backward is `row`'s; falls back to `row` when head_dim % 4 ≠ 0, a row does not fit a texture
 * or a batch row straddles a chunk boundary); `auto` (default): on CPU adapters `texel` for ≥ 8 queries per
 * batch row while {@link texelKernels} is on, else `row`; `tiled` on other adapters.
 */
export type AttentionKernel = "auto" | "tiled" | "row" | "texel";

/** Invocations per workgroup of the `row` kernels. */
const ROW_WG = 8;

/** Geometry and masking of an attention call. */
export interface AttentionOptions {
  /** Batch rows B. */
  batch: number;
  /** Query tokens per batch row (q has B·seqQ rows). */
  seqQ: number;
  /** Key/value tokens per batch row (k, v have B·seqKv rows). */
  seqKv: number;
  /** Query heads H. */
  heads: number;
  /** Key/value heads KV (H % KV == 0; KV == H is plain multi-head attention). */
  kvHeads: number;
  /** Dims per head (≤ 256). */
  headDim: number;
  /** Valid keys per batch row (right padding); default seqKv for every row. */
  kvLengths?: number[];
  /** Absolute position of query 0 per batch row; default seqKv − seqQ (prefill: 0; decoding: past length). */
  queryOffset?: number[];
  /** Sliding window (Mistral): key j visible to position p iff p − window < j ≤ p. null/undefined: none. */
  window?: number | null;
  /** Score scale; default 1/√headDim. */
  scale?: number;
  /** Storage type of the output (default q's). */
  outDtype?: DType;
  /** Kernel choice (default `auto`); see {@link AttentionKernel}. */
  kernel?: AttentionKernel;
  /**
   * Pipeline variant (default {@link attentionTiles}(headDim)); benchmarks and tests set it to run a small
   * head on the 256-wide variant. Must be one of the variants and at least headDim wide.
   */
  tiles?: AttentionTiles;
}

/** Activation gradients of {@link attention} (f32). */
export interface AttentionGradients {
  /** [B·seqQ, H·hd]. */
  dq: Tensor;
  /** [B·seqKv, KV·hd], summed over the query heads sharing each kv head. */
  dk: Tensor;
  /** [B·seqKv, KV·hd]. */
  dv: Tensor;
}

interface Geometry {
  batch: number;
  seqQ: number;
  seqKv: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  group: number;
  window: number;
  scale: number;
  kvLengths: number[];
  queryOffset: number[];
  /** Use the one-invocation-per-row kernels. */
  row: boolean;
  /** Tile sizes of the pipeline variant. */
  tiles: AttentionTiles;
  /** Run the forward with k and v packed into textures (`attn_fwd_texel`; the backward stays `row`). */
  texel: boolean;
}

function variant(op: string, headDim: number, t: AttentionTiles | undefined): AttentionTiles {
  if (!t) return attentionTiles(headDim);
  const known = [attentionTiles(128), attentionTiles(256)];
  const same = (a: AttentionTiles) => a.HDM === t.HDM && a.FQ === t.FQ && a.FK === t.FK && a.BT === t.BT;
  if (!known.some(same) || t.HDM < headDim) {
    throw new GpuError(op, `tiles ${JSON.stringify(t)} are not a variant for headDim ${headDim}`);
  }
  return t;
}

function isCount(n: number, min: number): boolean {
  return Number.isInteger(n) && n >= min;
}

/**
 * The design (row or tiled) that runs: the requested one, except that on llvmpipe, whose loops stop after
 * 65,535 iterations per invocation (lib/ops/attention_budget.ts), `auto` takes the tiled kernels when the row
 * ones would exceed that and the tiled ones do not; a call that neither fits is a clear error, never a
 * silently wrong result.
 */
function chooseDesign(op: string, gpu: Gpu, kernel: AttentionKernel, s: LoopShape): boolean {
  const row = kernel === "row" || (kernel === "auto" && gpu.isCpuAdapter);
  const cap = gpu.loopBudget;
  if (cap === Infinity) return row;
  const pass = op === "attention" ? "forward" : "backward";
  const need = (r: boolean) => attentionLoopIterations(s, r ? "row" : "tiled", pass);
  if (row && kernel === "auto" && need(true) > cap && need(false) <= cap) return false;
  if (need(row) > cap) {
    throw new GpuError(
      op,
      `llvmpipe stops a shader's loops after ${LLVMPIPE_LOOP_LIMIT} iterations per invocation; the ${
        row ? "row" : "tiled"
      } attention ${pass} over ${s.maxKvLength} keys at head_dim ${s.headDim} needs about ${need(row)}` +
        (kernel === "auto" ? " (the other design does not fit either)" : "") +
        ": use shorter sequences, a sliding window, or a GPU adapter",
    );
  }
  return row;
}

function geometry(op: string, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Geometry {
  const { batch, seqQ, seqKv, heads, kvHeads, headDim } = o;
  for (const [name, n] of Object.entries({ batch, seqQ, seqKv, heads, kvHeads, headDim })) {
    if (!isCount(n, 1)) throw new GpuError(op, `${name} must be a positive integer, got ${n}`);
  }
  if (heads % kvHeads !== 0) throw new GpuError(op, `heads ${heads} is not a multiple of kvHeads ${kvHeads}`);
  if (headDim > ATTENTION_MAX_HEAD_DIM) {
    throw new GpuError(op, `headDim ${headDim} exceeds the supported maximum ${ATTENTION_MAX_HEAD_DIM}`);
  }
  const expect = (t: Tensor, name: string, rows: number, cols: number) => {
    if (t.rows !== rows || t.rowSize !== cols || t.shape.length !== 2) {
      throw new GpuError(op, `${name} has shape [${t.shape}], expected [${rows}, ${cols}]`);
    }
    if (t.gpu !== q.gpu) throw new GpuError(op, `${name} lives on ${t.gpu.label}, q on ${q.gpu.label}`);
  };
  expect(q, "q", batch * seqQ, heads * headDim);
  expect(k, "k", batch * seqKv, kvHeads * headDim);
  expect(v, "v", batch * seqKv, kvHeads * headDim);
  const kvLengths = o.kvLengths ?? new Array<number>(batch).fill(seqKv);
  if (kvLengths.length !== batch || kvLengths.some((n) => !isCount(n, 0) || n > seqKv)) {
    throw new GpuError(op, `kvLengths must hold ${batch} integers in [0, ${seqKv}], got [${kvLengths}]`);
  }
  const queryOffset = o.queryOffset ?? new Array<number>(batch).fill(seqKv - seqQ);
  if (queryOffset.length !== batch || queryOffset.some((n) => !isCount(n, 0) || n > 0x7fffffff)) {
    throw new GpuError(
      op,
      `queryOffset must hold ${batch} non-negative integers, got [${queryOffset}]` +
        (o.queryOffset ? "" : ` (the default seqKv − seqQ = ${seqKv - seqQ} needs seqQ ≤ seqKv)`),
    );
  }
  const window = o.window ?? 0;
  if (!isCount(window, 0)) throw new GpuError(op, `window must be a positive integer or null, got ${window}`);
  if (o.window === 0) throw new GpuError(op, "window 0 would hide every key; use null for no window");
  const scale = o.scale ?? 1 / Math.sqrt(headDim);
  if (!Number.isFinite(scale)) throw new GpuError(op, `scale ${scale} is not finite`);
  const kernel = o.kernel ?? "auto";
  if (!["auto", "tiled", "row", "texel"].includes(kernel)) throw new GpuError(op, `unknown kernel ${kernel}`);
  const tiles = variant(op, headDim, o.tiles);
  const group = heads / kvHeads;
  const maxKvLength = Math.max(...kvLengths);
  // (the texel forward walks the keys as the row one does: the same loop budget)
  const design = kernel === "texel" ? "row" : kernel;
  const row = chooseDesign(op, q.gpu, design, { seqQ, seqKv, headDim, group, window, maxKvLength, tiles });
  const gpu = q.gpu;
  const maxTex = gpu.device.limits.maxTextureDimension2D;
  // texel: head_dim in whole texels, one kv row of texels and one batch row of keys fit a texture
  const texelFits = headDim % 4 === 0 && (kvHeads * headDim) / 4 <= maxTex && seqKv <= maxTex;
  // (auto: only with a workgroup's worth of queries per batch row, which share each texel fetch; a decoding
  // step's single query would pay for packing the whole cache)
  const texel = row && texelFits &&
    (kernel === "texel" || (kernel === "auto" && seqQ >= ROW_WG && texelKernels(gpu)));
  return {
    batch,
    seqQ,
    seqKv,
    heads,
    kvHeads,
    headDim,
    group: heads / kvHeads,
    window,
    scale,
    kvLengths,
    queryOffset,
    row,
    tiles,
    texel,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Row-chunk plumbing

interface Operand {
  t: Tensor;
  /** Rows per batch row. */
  seq: number;
  /** An output the kernel writes completely (scattered back when gathered). */
  write?: boolean;
}

interface Bound {
  buffer: GPUBuffer;
  /** Element offset of the run's first row inside `buffer`. */
  offset: number;
}

function rowBytes(t: Tensor): number {
  return t.rowSize * dtypeBytes(t.dtype);
}

function alignedCopy(op: string, gpu: Gpu, src: GPUBuffer, so: number, dst: GPUBuffer, d: number, n: number) {
  if (so % 4 || d % 4 || n % 4) {
    throw new GpuError(
      op,
      "copying rows across a chunk boundary needs 4-byte aligned rows (an f16 tensor with an odd row size)",
    );
  }
  gpu.copy(src, so, dst, d, n);
}

/**
 * Calls `fn` for runs of batch rows [b0, b0 + nb) whose rows lie inside one chunk of every operand, with
 * each operand's buffer and element offset; batch rows straddling a chunk are gathered one at a time.
 */
function forRuns(
  op: string,
  operands: Operand[],
  batch: number,
  fn: (b0: number, nb: number, bound: Bound[]) => void,
): void {
  const gpu = operands[0].t.gpu;
  // the chunk holding all of batch b's rows of an operand, or -1 when they straddle a boundary
  const wholeIn = (o: Operand, b: number) => {
    const c0 = chunkOf(o.t, b * o.seq).chunk;
    const c1 = chunkOf(o.t, (b + 1) * o.seq - 1).chunk;
    return c0 === c1 ? c0 : -1;
  };
  for (let b = 0; b < batch;) {
    const ch = operands.map((o) => wholeIn(o, b));
    if (ch.every((c) => c >= 0)) {
      let nb = 1;
      while (b + nb < batch && nb < 65535 && operands.every((o, i) => wholeIn(o, b + nb) === ch[i])) nb++;
      fn(
        b,
        nb,
        operands.map((o, i) => ({
          buffer: o.t.chunks[ch[i]],
          offset: chunkOf(o.t, b * o.seq).offset,
        })),
      );
      b += nb;
      continue;
    }
    const temps: (GPUBuffer | null)[] = operands.map((o, i) => {
      if (ch[i] >= 0) return null;
      const rb = rowBytes(o.t);
      const tmp = gpu.createStorage(o.seq * rb, `${op}.gather`);
      if (!o.write) {
        let done = 0;
        for (const p of rowRuns(o.t, b * o.seq, (b + 1) * o.seq)) {
          alignedCopy(op, gpu, o.t.chunks[p.chunk], p.local * rb, tmp, done * rb, p.rows * rb);
          done += p.rows;
        }
      }
      return tmp;
    });
    fn(
      b,
      1,
      operands.map((o, i) =>
        temps[i]
          ? { buffer: temps[i]!, offset: 0 }
          : { buffer: o.t.chunks[ch[i]], offset: chunkOf(o.t, b * o.seq).offset }
      ),
    );
    operands.forEach((o, i) => {
      const tmp = temps[i];
      if (!tmp) return;
      if (o.write) {
        const rb = rowBytes(o.t);
        let done = 0;
        for (const p of rowRuns(o.t, b * o.seq, (b + 1) * o.seq)) {
          alignedCopy(op, gpu, tmp, done * rb, o.t.chunks[p.chunk], p.local * rb, p.rows * rb);
          done += p.rows;
        }
      }
      gpu.release(tmp);
    });
    b += 1;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Dispatch helpers

interface Offsets {
  q?: number;
  k?: number;
  v?: number;
  o?: number;
  dO?: number;
  dk?: number;
  dv?: number;
}

function params(g: Geometry, b0: number, off: Offsets, flags: number): Uint32Array {
  return words(
    g.seqQ,
    g.seqKv,
    g.heads,
    g.kvHeads,
    g.headDim,
    g.group,
    g.window,
    b0,
    off.q ?? 0,
    off.k ?? 0,
    off.v ?? 0,
    off.o ?? 0,
    off.dO ?? 0,
    off.dk ?? 0,
    off.dv ?? 0,
    flags,
    { f: g.scale },
    0,
    0,
    0,
  );
}

function metaBuffer(gpu: Gpu, g: Geometry): GPUBuffer {
  const meta = new Uint32Array(2 * g.batch);
  for (let b = 0; b < g.batch; b++) {
    meta[2 * b] = g.kvLengths[b];
    meta[2 * b + 1] = g.queryOffset[b];
  }
  const buf = gpu.createStorage(meta.byteLength, "attention.meta");
  gpu.write(buf, 0, meta);
  return buf;
}

function statsBuffer(gpu: Gpu, g: Geometry): GPUBuffer {
  const bytes = g.batch * g.heads * g.seqQ * 8;
  if (bytes > gpu.device.limits.maxStorageBufferBindingSize) {
    throw new GpuError("attentionBackward", `softmax statistics need ${bytes} bytes, over the binding limit`);
  }
  return gpu.createStorage(bytes, "attention.stats");
}

function types(q: Tensor, k: Tensor, v: Tensor, out: DType, dOut: DType): Record<string, DType> {
  return { TQ: q.dtype, TK: k.dtype, TV: v.dtype, TO: out, TD: dOut };
}

/** Runs the forward kernel into `out`; with `stats`, also writes each query's logsumexp there. */
async function forward(
  op: string,
  g: Geometry,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  meta: GPUBuffer,
  stats: GPUBuffer | null,
): Promise<void> {
  const gpu = q.gpu;
  const operands = [{ t: q, seq: g.seqQ }, { t: k, seq: g.seqKv }, { t: v, seq: g.seqKv }, {
    t: out,
    seq: g.seqQ,
    write: true,
  }];
  // (a batch row straddling a chunk boundary is gathered inside forRuns: the row kernel then)
  const texel = g.texel && !operands.some((o) => straddles(o, g.batch));
  const pipe = await gpu.pipeline({
    family: "attention",
    entry: texel ? "attn_fwd_texel" : g.row ? "attn_fwd_tpr" : "attn_fwd",
    types: types(q, k, v, out.dtype, "f32"),
    consts: { ...g.tiles },
    ...(texel ? { constants: { TEXEL_HD4: g.headDim / 4 } } : {}),
  });
  const st = stats ?? gpu.createStorage(16, "attention.nostats");
  if (texel) {
    try {
      await forwardTexel(op, g, operands, meta, st, pipe, !!stats);
    } finally {
      if (!stats) gpu.release(st);
    }
    return;
  }
  forRuns(op, operands, g.batch, (b0, nb, [bq, bk, bv, bo]) => {
    gpu.dispatch(
      op,
      pipe,
      [meta, bq.buffer, bk.buffer, bv.buffer, bo.buffer, st],
      [Math.ceil(g.seqQ / (g.row ? ROW_WG : g.tiles.FQ)), g.heads, nb],
      params(g, b0, { q: bq.offset, k: bk.offset, v: bv.offset, o: bo.offset }, stats ? 1 : 0),
    );
  });
  if (!stats) gpu.release(st);
}

/**
 * The texel forward: per run of batch rows (at most a texture's height of keys at a time), k and v are
 * packed into the texel workspace (roles A and B, as matmul's operands) and `attn_fwd_texel` reads them.
 */
async function forwardTexel(
  op: string,
  g: Geometry,
  operands: Operand[],
  meta: GPUBuffer,
  st: GPUBuffer,
  pipe: GPUComputePipeline,
  withStats: boolean,
): Promise<void> {
  const [q, k, v] = operands.map((o) => o.t);
  const gpu = q.gpu;
  const qs = g.heads * g.headDim, kvs = g.kvHeads * g.headDim;
  const perPiece = Math.max(1, Math.floor(gpu.device.limits.maxTextureDimension2D / g.seqKv));
  // forRuns records synchronously and the packs await the pipeline cache: collect the runs first (no batch
  // row straddles a chunk here, so every bound buffer is a chunk of its tensor)
  const runs: { b0: number; nb: number; bound: Bound[] }[] = [];
  forRuns(op, operands, g.batch, (b0, nb, bound) => runs.push({ b0, nb, bound }));
  for (const { b0, nb, bound: [bq, bk, bv, bo] } of runs) {
    for (let s = 0; s < nb; s += perPiece) {
      const n = Math.min(perPiece, nb - s);
      const rows = n * g.seqKv;
      const src = (x: Bound, t: Tensor) => ({
        buf: x.buffer,
        dtype: t.dtype,
        off: x.offset + s * g.seqKv * kvs,
        ld: kvs,
        trans: false,
        rows,
        cols: kvs,
        height: rows,
      });
      const kView = await packTexels(gpu, "A", src(bk, k), op);
      const vView = await packTexels(gpu, "B", src(bv, v), op);
      gpu.dispatch(
        op,
        pipe,
        [meta, bq.buffer, null, null, bo.buffer, st, null, null, null, null, kView, vView],
        [Math.ceil(g.seqQ / ROW_WG), g.heads, n],
        params(
          g,
          b0 + s,
          { q: bq.offset + s * g.seqQ * qs, o: bo.offset + s * g.seqQ * qs },
          withStats ? 1 : 0,
        ),
      );
    }
  }
}

/** Whether some batch row of an operand straddles a chunk boundary. */
function straddles(o: Operand, batch: number): boolean {
  if (o.t.chunks.length === 1) return false;
  for (let b = 0; b < batch; b++) {
    if (chunkOf(o.t, b * o.seq).chunk !== chunkOf(o.t, (b + 1) * o.seq - 1).chunk) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Public API

/**
 * Causal attention softmax(scale·q·kᵀ + mask)·v with GQA, padding, query offsets and a sliding window.
 * Returns out [B·seqQ, H·hd] in `opts.outDtype` (default q's dtype).
 */
export async function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Promise<Tensor> {
  const g = geometry("attention", q, k, v, opts);
  const gpu = q.gpu;
  const out = Tensor.empty(gpu, [g.batch * g.seqQ, g.heads * g.headDim], opts.outDtype ?? q.dtype, {
    name: "attention.out",
  });
  const meta = metaBuffer(gpu, g);
  try {
    await forward("attention", g, q, k, v, out, meta, null);
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    gpu.release(meta);
  }
  return out;
}

/**
 * Gradients of `attention(q, k, v, opts)` w.r.t. q, k and v for the output gradient `dOut` [B·seqQ, H·hd]
 * (any storage type), as f32 tensors. Recomputes the probabilities (nothing is kept from the forward).
 */
export async function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dOut: Tensor,
  opts: AttentionOptions,
): Promise<AttentionGradients> {
  const op = "attentionBackward";
  const g = geometry(op, q, k, v, opts);
  if (dOut.rows !== q.rows || dOut.rowSize !== q.rowSize || dOut.gpu !== q.gpu) {
    throw new GpuError(op, `dOut has shape [${dOut.shape}], expected q's [${q.shape}] on ${q.gpu.label}`);
  }
  if (g.row) return await backwardRows(op, g, q, k, v, dOut);
  const gpu = q.gpu;
  const tp = types(q, k, v, "f32", dOut.dtype);
  const [prep, pdq, pdkdv] = await Promise.all(
    ["attn_bwd_prep", "attn_bwd_dq", "attn_bwd_dkdv"].map((entry) =>
      gpu.pipeline({ family: "attention", entry, types: tp, consts: { ...g.tiles } })
    ),
  );
  const qShape = [g.batch * g.seqQ, g.heads * g.headDim];
  const kvShape = [g.batch * g.seqKv, g.kvHeads * g.headDim];
  const meta = metaBuffer(gpu, g);
  const stats = statsBuffer(gpu, g);
  const o32 = Tensor.empty(gpu, qShape, "f32", { name: "attention.o32" });
  const dq = Tensor.empty(gpu, qShape, "f32", { name: "attention.dq" });
  const dk = Tensor.empty(gpu, kvShape, "f32", { name: "attention.dk" });
  const dv = Tensor.empty(gpu, kvShape, "f32", { name: "attention.dv" });
  try {
    await forward(op, g, q, k, v, o32, meta, stats);
    forRuns(op, [{ t: o32, seq: g.seqQ }, { t: dOut, seq: g.seqQ }], g.batch, (b0, nb, [bo, bd]) => {
      const n = nb * g.seqQ * g.heads;
      gpu.dispatch(
        op,
        prep,
        [null, null, null, null, null, stats, bd.buffer, bo.buffer],
        grid1d(n),
        params(g, b0, { o: bo.offset, dO: bd.offset }, n),
      );
    });
    dispatchGradients(op, g, pdq, pdkdv, g.tiles.BT, { q, k, v, dOut, dq, dk, dv }, meta, stats);
  } catch (e) {
    dq.dispose();
    dk.dispose();
    dv.dispose();
    throw e;
  } finally {
    o32.dispose();
    gpu.release(stats);
    gpu.release(meta);
  }
  return { dq, dk, dv };
}

/**
 * Records the two gradient passes shared by both backward designs: dq from the q rows (with the stats),
 * then dk/dv from the k/v rows. `rowsPerGroup` is the rows each workgroup of the chosen kernels covers.
 */
function dispatchGradients(
  op: string,
  g: Geometry,
  pdq: GPUComputePipeline,
  pdkdv: GPUComputePipeline,
  rowsPerGroup: number,
  t: { q: Tensor; k: Tensor; v: Tensor; dOut: Tensor; dq: Tensor; dk: Tensor; dv: Tensor },
  meta: GPUBuffer,
  stats: GPUBuffer,
): void {
  const { q, k, v, dOut, dq, dk, dv } = t;
  const gpu = q.gpu;
  const qOps = [{ t: q, seq: g.seqQ }, { t: k, seq: g.seqKv }, { t: v, seq: g.seqKv }, {
    t: dOut,
    seq: g.seqQ,
  }];
  forRuns(op, [...qOps, { t: dq, seq: g.seqQ, write: true }], g.batch, (b0, nb, [bq, bk, bv, bd, bg]) => {
    gpu.dispatch(
      op,
      pdq,
      [meta, bq.buffer, bk.buffer, bv.buffer, null, stats, bd.buffer, null, bg.buffer],
      [Math.ceil(g.seqQ / rowsPerGroup), g.heads, nb],
      params(g, b0, { q: bq.offset, k: bk.offset, v: bv.offset, dO: bd.offset, o: bg.offset }, 0),
    );
  });
  forRuns(
    op,
    [...qOps, { t: dk, seq: g.seqKv, write: true }, { t: dv, seq: g.seqKv, write: true }],
    g.batch,
    (b0, nb, [bq, bk, bv, bd, bgk, bgv]) => {
      gpu.dispatch(
        op,
        pdkdv,
        [meta, bq.buffer, bk.buffer, bv.buffer, null, stats, bd.buffer, null, bgk.buffer, bgv.buffer],
        [Math.ceil(g.seqKv / rowsPerGroup), g.kvHeads, nb],
        params(g, b0, {
          q: bq.offset,
          k: bk.offset,
          v: bv.offset,
          dO: bd.offset,
          dk: bgk.offset,
          dv: bgv.offset,
        }, 0),
      );
    },
  );
}

/** The backward with the one-invocation-per-row kernels: q rows (stats and dq), then k/v rows (dk, dv). */
async function backwardRows(
  op: string,
  g: Geometry,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dOut: Tensor,
): Promise<AttentionGradients> {
  const gpu = q.gpu;
  const spec = { family: "attention", types: types(q, k, v, "f32", dOut.dtype), consts: { ...g.tiles } };
  const [pq, pkv] = await Promise.all(
    ["attn_bwd_q_tpr", "attn_bwd_kv_tpr"].map((entry) => gpu.pipeline({ ...spec, entry })),
  );
  const qShape = [g.batch * g.seqQ, g.heads * g.headDim];
  const kvShape = [g.batch * g.seqKv, g.kvHeads * g.headDim];
  const meta = metaBuffer(gpu, g);
  const stats = statsBuffer(gpu, g);
  const dq = Tensor.empty(gpu, qShape, "f32", { name: "attention.dq" });
  const dk = Tensor.empty(gpu, kvShape, "f32", { name: "attention.dk" });
  const dv = Tensor.empty(gpu, kvShape, "f32", { name: "attention.dv" });
  try {
    dispatchGradients(op, g, pq, pkv, ROW_WG, { q, k, v, dOut, dq, dk, dv }, meta, stats);
  } catch (e) {
    dq.dispose();
    dk.dispose();
    dv.dispose();
    throw e;
  } finally {
    gpu.release(stats);
    gpu.release(meta);
  }
  return { dq, dk, dv };
}

// ---------------------------------------------------------------------------------------------------------
// KV cache

/** Shape of a {@link KvCache}. */
export interface KvCacheOptions {
  /** Transformer layers (one k and one v tensor each). */
  layers: number;
  /** Batch rows. */
  batch: number;
  /** Capacity in tokens per batch row. */
  maxLen: number;
  /** Key/value heads. */
  kvHeads: number;
  /** Dims per head. */
  headDim: number;
  /** Storage type (appended k/v must have it). */
  dtype: DType;
}

/** The attention options a decoding step over a {@link KvCache} needs. */
export interface KvCacheShape {
  /** New tokens per batch row. */
  seqQ: number;
  /** The cache capacity (k and v rows per batch row). */
  seqKv: number;
  /** Stored plus new tokens per batch row. */
  kvLengths: number[];
  /** Position of each row's first new token (the stored length). */
  queryOffset: number[];
}

/**
 * A minimal KV cache for greedy generation: per layer, k and v tensors [batch·maxLen, KV·hd]; batch row b's
 * token at position p lives in row b·maxLen + p. `lengths[b]` counts the tokens stored for row b.
 *
 * One step of `n` new tokens per row (prefill: n = the padded prompt length; decoding: n = 1):
 * 1. per layer: rotate q and k with `positionOffset: cache.lengths`, `cache.append(layer, k, v, n)`, then
 *    `attention(q, cache.k[layer], cache.v[layer], { ...geometry, ...cache.attentionOptions(n) })`;
 * 2. after the last layer: `cache.advance(realTokens)` (per row: n, or a padded prompt's true length; the
 *    padding rows a prefill wrote are overwritten by the following steps and masked until then).
 */
export class KvCache {
  /** Batch rows. */
  readonly batch: number;
  /** Capacity per batch row. */
  readonly maxLen: number;
  /** Key/value heads. */
  readonly kvHeads: number;
  /** Dims per head. */
  readonly headDim: number;
  /** Per layer key tensors [batch·maxLen, KV·hd]. */
  readonly k: Tensor[];
  /** Per layer value tensors [batch·maxLen, KV·hd]. */
  readonly v: Tensor[];
  /** Tokens stored per batch row. */
  readonly lengths: number[];

  /** Allocates the tensors (contents unspecified until appended; masked by `lengths`). */
  constructor(gpu: Gpu, opts: KvCacheOptions) {
    for (const key of ["layers", "batch", "maxLen", "kvHeads", "headDim"] as const) {
      if (!isCount(opts[key], 1)) throw new GpuError("KvCache", `${key} must be a positive integer`);
    }
    this.batch = opts.batch;
    this.maxLen = opts.maxLen;
    this.kvHeads = opts.kvHeads;
    this.headDim = opts.headDim;
    const shape = [opts.batch * opts.maxLen, opts.kvHeads * opts.headDim];
    this.k = [];
    this.v = [];
    for (let l = 0; l < opts.layers; l++) {
      this.k.push(Tensor.empty(gpu, shape, opts.dtype, { name: `kv_cache.k${l}` }));
      this.v.push(Tensor.empty(gpu, shape, opts.dtype, { name: `kv_cache.v${l}` }));
    }
    this.lengths = new Array<number>(opts.batch).fill(0);
  }

  /**
   * Copies the `seq` rows per batch row of k and v [batch·seq, KV·hd] into layer `layer` at positions
   * `positions[b]` … (default: the current lengths). Does not change `lengths` (see {@link advance}).
   */
  append(layer: number, k: Tensor, v: Tensor, seq: number, positions: number[] = this.lengths): void {
    const op = "KvCache.append";
    const ck = this.k[layer], cv = this.v[layer];
    if (!ck) throw new GpuError(op, `layer ${layer} out of range [0, ${this.k.length})`);
    for (const [name, t, c] of [["k", k, ck], ["v", v, cv]] as const) {
      if (t.rows !== this.batch * seq || t.rowSize !== c.rowSize || t.dtype !== c.dtype || t.gpu !== c.gpu) {
        throw new GpuError(
          op,
          `${name} [${t.shape}] ${t.dtype} does not fit the cache: expected [${
            this.batch * seq
          }, ${c.rowSize}] ${c.dtype} on ${c.gpu.label}`,
        );
      }
    }
    if (positions.length !== this.batch || positions.some((p) => !isCount(p, 0) || p + seq > this.maxLen)) {
      throw new GpuError(op, `positions [${positions}] + ${seq} tokens exceed the capacity ${this.maxLen}`);
    }
    for (let b = 0; b < this.batch; b++) {
      copyRows(op, k, b * seq, ck, b * this.maxLen + positions[b], seq);
      copyRows(op, v, b * seq, cv, b * this.maxLen + positions[b], seq);
    }
  }

  /** Adds `n` (one count, or one per batch row) to the stored lengths. */
  advance(n: number | number[]): void {
    for (let b = 0; b < this.batch; b++) {
      const add = typeof n === "number" ? n : n[b];
      if (!isCount(add, 0) || this.lengths[b] + add > this.maxLen) {
        throw new GpuError("KvCache.advance", `row ${b}: ${this.lengths[b]} + ${add} exceeds ${this.maxLen}`);
      }
      this.lengths[b] += add;
    }
  }

  /** Attention options for `seqQ` new tokens per row just appended at the current lengths. */
  attentionOptions(seqQ: number): KvCacheShape {
    return {
      seqQ,
      seqKv: this.maxLen,
      kvLengths: this.lengths.map((n) => Math.min(this.maxLen, n + seqQ)),
      queryOffset: [...this.lengths],
    };
  }

  /** Forgets every stored token. */
  reset(): void {
    this.lengths.fill(0);
  }

  /** Releases the tensors. */
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}

/** Copies rows [from, from + n) of src to rows [to, to + n) of dst (same row bytes), across chunks. */
function copyRows(op: string, src: Tensor, from: number, dst: Tensor, to: number, n: number): void {
  const rb = rowBytes(src);
  let done = 0;
  for (const p of rowRuns(src, from, from + n)) {
    let sub = 0;
    for (const d of rowRuns(dst, to + done, to + done + p.rows)) {
      alignedCopy(
        op,
        src.gpu,
        src.chunks[p.chunk],
        (p.local + sub) * rb,
        dst.chunks[d.chunk],
        d.local * rb,
        d.rows * rb,
      );
      sub += d.rows;
    }
    done += p.rows;
  }
}
