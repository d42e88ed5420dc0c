/**
 * Matrix multiply on the GPU: {@link matmul} (C = α·op(A)·op(B) + bias + C, batched) and the two
 * weight-layout helpers every model and backward pass uses, {@link linear} and {@link linearT}.
 *
 * All operands may be f32 or f16 storage independently; products are accumulated in f32. Tensors that are
 * chunked along dim 0 (larger than one storage binding, e.g. a 7B model's embedding used as the LM head)
 * work everywhere: the product is split into pieces whose operands each lie in one chunk — a chunk along
 * C's rows or columns writes a slice of C at an offset, a chunk along K accumulates partial products
 * (into an f32 scratch when C is f16, so the result is rounded to f16 only once).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { type DType, dtypeBytes } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { chunkOf, chunkStarts, grid1d, intervals, rowSegments, words } from "./_chunks.ts";
import { gemmRows, ROWS_PER_THREAD, rowsCaps } from "./matmul_rows.ts";
import { gemmTexel, texelCaps, texelKernels } from "./matmul_texel.ts";

/**
 * Which kernel runs a matmul. `direct`: register-blocked 32×16 per thread, operands read straight from
 * storage; `texel`: the same blocking with both operands first packed into textures (fastest on CPU
 * adapters such as lavapipe, see lib/ops/matmul_texel.ts); `tiled`: 16×16 blocks with K-tiles staged in
 * workgroup memory (the GPU design); `skinny`: 4×16 blocks in 4-row tiles, for products with few rows
 * (m ≤ 40, e.g. a linear layer on a handful of tokens); `rows`: up to 64 rows of C per thread with op(A)
 * packed into a texture and op(B) streamed once, split along K when C is small (CPU adapters, see
 * lib/ops/matmul_rows.ts); `naive`: one thread per output (benchmark baseline); `auto`: on CPU/fallback
 * adapters `rows` for unbatched products with m ≤ 64 (not tiny ones), else `skinny` when m ≤ 40 (`texel`
 * for a long K), else `texel` (`direct` for batched or tiny products); on GPUs `skinny` when m ≤ 40, else
 * `tiled`.
 */
export type MatmulKernel = "auto" | "direct" | "texel" | "tiled" | "skinny" | "rows" | "naive";

/** Options for {@link matmul}. */
export interface MatmulOptions {
  /** Use Aᵀ: A is stored [k, m] (or [batch, k, m]). */
  transA?: boolean;
  /** Use Bᵀ: B is stored [n, k] (or [batch, n, k]). */
  transB?: boolean;
  /** Added to every row of the result: n values, shape [n] or [1, n] (not scaled by alpha). */
  bias?: Tensor;
  /** Write the result here (shape [m, n] or [batch, m, n]) instead of allocating. */
  out?: Tensor;
  /** Storage type of a new result: default f16 when A and B are both f16, else f32. */
  outDtype?: DType;
  /** Add to the existing contents of `out` (which must be given): C = α·op(A)·op(B) + bias + C. */
  accumulate?: boolean;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** Kernel choice (default `auto`); see {@link MatmulKernel}. */
  kernel?: MatmulKernel;
  /**
   * Let a few-row product with a long K run split along K (`skinny`: see {@link skinnySplit}; `rows`: see
   * lib/ops/matmul_rows.ts). Default: `rows` splits whenever that gives its small C enough workgroups;
   * `skinny` on GPUs only (a 2-core CPU adapter is already busy with the unsplit kernel's few workgroups).
   */
  splitK?: boolean;
}

/** Weight layouts: `out_in` = [out, in] (HF nn.Linear); `in_out` = [in, out] (GPT-2 Conv1D). */
export type WeightLayout = "out_in" | "in_out";

/** Options for {@link linear}. */
export interface LinearOptions {
  /** How W is stored. */
  layout: WeightLayout;
  /** Added to every output row (length `out`). */
  bias?: Tensor;
  /** Write the result here. */
  out?: Tensor;
  /** Storage type of a new result (default as in {@link matmul}). */
  outDtype?: DType;
  /** Add to the existing contents of `out`. */
  accumulate?: boolean;
  /** Kernel choice (default `auto`). */
  kernel?: MatmulKernel;
}

/** Options for {@link linearT}. */
export interface LinearTOptions {
  /** How W is stored. */
  layout: WeightLayout;
  /** Write the result here. */
  out?: Tensor;
  /** Storage type of a new result (default as in {@link matmul}). */
  outDtype?: DType;
  /** Add to the existing contents of `out`. */
  accumulate?: boolean;
  /** Kernel choice (default `auto`). */
  kernel?: MatmulKernel;
}

/** Rows × columns of C covered by one workgroup of each entry point. */
const TILES: Record<string, [number, number]> = {
  mm_direct: [128, 128],
  mm_texel: [128, 128],
  mm_tiled: [128, 128],
  mm_skinny: [4, 512],
  mm_rows: [64, 128],
  mm_naive: [16, 16],
};
/** Up to this many rows of C the skinny kernel beats 128-row tiles (blocked kernels only). */
const SKINNY_MAX_M = 40; // measured on lavapipe: skinny wins below ~48 rows, direct above
const MAX_GROUPS = 65535;
/** A skinny product with fewer blocks of C than this, and K of at least SPLIT_K_MIN, is split along K. */
const SPLIT_K_GROUPS = 64;
const SPLIT_K_MIN = 4096;
/** K per slice at least (so the partial sums stay few). */
const SPLIT_K_SLICE = 1024;

/**
 * K slices for a skinny product: enough that the slices' blocks fill SPLIT_K_GROUPS workgroups, each
 * slice a multiple of 4 and at least SPLIT_K_SLICE long; 1 when the product needs no split.
 */
export function skinnySplit(m: number, n: number, k: number): { slices: number; kc: number } {
  const groups = Math.ceil(n / 512) * Math.ceil(m / 4);
  if (k < SPLIT_K_MIN || groups >= SPLIT_K_GROUPS) return { slices: 1, kc: k };
  const want = Math.min(Math.ceil(SPLIT_K_GROUPS / groups), Math.floor(k / SPLIT_K_SLICE));
  const kc = Math.ceil(Math.ceil(k / Math.max(1, want)) / 4) * 4;
  return { slices: Math.ceil(k / kc), kc };
}
/** Products below this many multiply-adds stay on `direct` (packing would cost more than it saves). */
const TEXEL_MIN_WORK = 1 << 21;

/** The kernel `auto` picks on a device for a large unbatched product with more than 40 rows. */
export function autoKernel(gpu: Gpu): "texel" | "direct" | "tiled" {
  return gpu.isCpuAdapter ? (texelKernels(gpu) ? "texel" : "direct") : "tiled";
}

/** On CPU adapters, unbatched products with up to this many rows run `rows` (one row group of mm_rows). */
const ROWS_MAX_M = ROWS_PER_THREAD;
/** … with at least this many multiply-adds (below, the extra packing dispatch is not worth it). */
const ROWS_MIN_WORK = 1 << 18;

/** The kernel `auto` picks for a product of this shape. */
function pickKernel(gpu: Gpu, m: number, n: number, k: number, batched: boolean): MatmulKernel {
  // few rows on a CPU adapter (the LM head forward h·Eᵀ and backward dlogits·E of v*, linear layers on
  // a few tokens): every row in one thread, op(B) streamed once (bench/kernels_bench.ts: the LM head
  // 1.8–5× faster than skinny/texel on lavapipe)
  if (
    gpu.isCpuAdapter && !batched && m <= ROWS_MAX_M && m * n * k >= ROWS_MIN_WORK && texelKernels(gpu)
  ) {
    return "rows";
  }
  if (m <= SKINNY_MAX_M) {
    // few rows but a long K and a narrow C (the LM head's backward, dlogits · W): on CPU adapters the
    // packed-texture kernel reads the long operands faster (measured 1.5× on lavapipe)
    const longK = k >= SPLIT_K_MIN && 4 * n <= k;
    return gpu.isCpuAdapter && longK && !batched && texelKernels(gpu) ? "texel" : "skinny";
  }
  if (!gpu.isCpuAdapter) return "tiled";
  return !batched && m * n * k >= TEXEL_MIN_WORK && texelKernels(gpu) ? "texel" : "direct";
}

/**
 * The longest K one dispatch of a storage-read kernel may walk: llvmpipe stops a shader invocation's loops
 * after 65,535 iterations (silently: `tiled` and `naive` returned wrong sums at K = 152,064, a Qwen2.5 LM
 * head's backward), so there a longer K runs as pieces summed in f32; the vec4 kernels step 4 at a time.
 */
function loopSafeK(gpu: Gpu, kernel: MatmulKernel): number {
  const cap = gpu.loopBudget;
  return kernel === "tiled" || kernel === "naive" ? cap : 4 * cap;
}

const dummies = new WeakMap<Gpu, GPUBuffer>();

/**
 * A buffer to bind as a vec4 view: the buffer itself, or (when it is smaller than one vec4, so the vec4
 * path cannot be in use) a small placeholder, because a binding must hold at least one element.
 */
export function vec4Binding(gpu: Gpu, buf: GPUBuffer, dtype: DType): GPUBuffer {
  if (buf.size >= 4 * dtypeBytes(dtype)) return buf;
  let d = dummies.get(gpu);
  if (!d) {
    d = gpu.createStorage(16, "vec4-placeholder");
    dummies.set(gpu, d);
  }
  return d;
}

/** A tensor seen as a (possibly batched) stored matrix. */
interface MatView {
  t: Tensor;
  batched: boolean;
  /** Stored rows and columns of one matrix. */
  rows: number;
  cols: number;
}

function matView(op: string, t: Tensor, what: string): MatView {
  if (t.shape.length === 2) return { t, batched: false, rows: t.shape[0], cols: t.shape[1] };
  if (t.shape.length === 3) return { t, batched: true, rows: t.shape[1], cols: t.shape[2] };
  throw new GpuError(op, `${what} must be 2-D or 3-D, got shape [${t.shape}]`);
}

/** Element offset (inside its chunk) and chunk of stored element (batch b, row r, col c). */
function locate(v: MatView, b: number, r: number, c: number): { buf: GPUBuffer; off: number; bs: number } {
  // dim 0 is the batch of a batched view, else the stored rows
  const at = chunkOf(v.t, v.batched ? b : r);
  const bs = v.batched ? v.rows * v.cols : 0;
  const off = v.batched ? at.local * bs + r * v.cols + c : at.offset + c;
  return { buf: v.t.chunks[at.chunk], off, bs };
}

function sameDevice(op: string, ts: (Tensor | undefined)[]): Gpu {
  const gpu = ts[0]!.gpu;
  for (const t of ts) {
    if (t && t.gpu !== gpu) {
      throw new GpuError(op, `tensors live on different devices (${gpu.label}, ${t.gpu.label})`);
    }
    if (t?.disposed) throw new GpuError(op, `tensor ${t.name} was disposed`);
  }
  return gpu;
}

function noAlias(op: string, out: Tensor, inputs: (Tensor | undefined)[]): void {
  for (const t of inputs) {
    if (t && t.chunks.some((c) => out.chunks.includes(c))) {
      throw new GpuError(op, `the output must not share buffers with an input (${t.name})`);
    }
  }
}

/** The default result type: f16 when every input is f16, else f32. */
export function defaultOutDtype(...dtypes: DType[]): DType {
  return dtypes.every((d) => d === "f16") ? "f16" : "f32";
}

/** dst ← src (same shape; any dtypes), on the GPU, over both tensors' chunks. */
export async function convertInto(src: Tensor, dst: Tensor, op = "convert"): Promise<void> {
  const pipe = await src.gpu.pipeline({
    family: "cast",
    entry: "convert",
    types: { SRC: src.dtype, DST: dst.dtype },
  });
  for (const s of rowSegments([src, dst])) {
    const n = s.rows * src.rowSize;
    src.gpu.dispatch(
      op,
      pipe,
      [src.chunks[s.at[0].chunk], dst.chunks[s.at[1].chunk]],
      grid1d(n),
      words(n, s.at[0].offset, s.at[1].offset),
    );
  }
}

/**
 * C = alpha · op(A) · op(B) (+ bias broadcast over rows) (+ the existing C when `accumulate`).
 *
 * op(A) is [m, k] and op(B) is [k, n]; with `transA` A is stored [k, m], with `transB` B is stored [n, k].
 * Batched: A and/or B 3-D [batch, ·, ·] with the same batch count, a 2-D operand is broadcast over the
 * batches; C is then [batch, m, n]. Storage types of A, B, bias and C are independent (f32/f16); the
 * accumulation is f32. Records the dispatches and returns C (a new tensor unless `out` is given).
 */
export async function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Promise<Tensor> {
  const op = "matmul";
  const gpu = sameDevice(op, [a, b, opts.bias, opts.out]);
  const A = matView(op, a, "A"), B = matView(op, b, "B");
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const m = transA ? A.cols : A.rows, k = transA ? A.rows : A.cols;
  const kb = transB ? B.cols : B.rows, n = transB ? B.rows : B.cols;
  if (k !== kb) {
    throw new GpuError(
      op,
      `inner dimensions differ: op(A) is [${m}, ${k}], op(B) is [${kb}, ${n}] (A [${a.shape}]${
        transA ? "ᵀ" : ""
      }, B [${b.shape}]${transB ? "ᵀ" : ""})`,
    );
  }
  const batched = A.batched || B.batched;
  const batch = A.batched ? a.shape[0] : B.batched ? b.shape[0] : 1;
  if (A.batched && B.batched && a.shape[0] !== b.shape[0]) {
    throw new GpuError(op, `batch counts differ: A [${a.shape}], B [${b.shape}]`);
  }
  const outShape = batched ? [batch, m, n] : [m, n];
  if (opts.bias && opts.bias.size !== n) {
    throw new GpuError(op, `bias has ${opts.bias.size} values, expected n = ${n}`);
  }
  if (opts.accumulate && !opts.out) throw new GpuError(op, "accumulate needs `out`");
  let c: Tensor;
  if (opts.out) {
    c = opts.out;
    if (c.shape.length !== outShape.length || c.shape.some((d, i) => d !== outShape[i])) {
      throw new GpuError(op, `out has shape [${c.shape}], expected [${outShape}]`);
    }
    noAlias(op, c, [a, b, opts.bias]);
  } else {
    c = Tensor.empty(gpu, outShape, opts.outDtype ?? defaultOutDtype(a.dtype, b.dtype), { name: "matmul" });
  }
  await matmulInto(a, b, c, {
    A,
    B,
    transA,
    transB,
    m,
    n,
    k,
    batch,
    bias: opts.bias,
    accumulate: opts.accumulate ?? false,
    alpha: opts.alpha ?? 1,
    kernel: opts.kernel ?? "auto",
    splitK: opts.splitK,
  });
  return c;
}

interface Plan {
  A: MatView;
  B: MatView;
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  batch: number;
  bias?: Tensor;
  accumulate: boolean;
  alpha: number;
  kernel: MatmulKernel;
  /** As given; unset: skinny splits on GPUs only, rows always when it pays. */
  splitK?: boolean;
}

async function matmulInto(a: Tensor, b: Tensor, c: Tensor, pl: Plan): Promise<void> {
  const gpu = a.gpu;
  const { A, B, transA, transB, m, n, k, batch } = pl;
  if (m === 0 || n === 0 || batch === 0) return;
  const kernel = pl.kernel === "auto" ? pickKernel(gpu, m, n, k, A.batched || B.batched) : pl.kernel;
  const entry = `mm_${kernel}`;
  const texel = kernel === "texel";
  const [tileM, tileN] = TILES[entry];
  const caps = texel
    ? texelCaps(gpu, k)
    : kernel === "rows"
    ? { ...rowsCaps(gpu), n: MAX_GROUPS * tileN }
    : { m: MAX_GROUPS * tileM, n: MAX_GROUPS * tileN, k: loopSafeK(gpu, kernel) };
  // where chunk boundaries cut the problem: along the batch, C's rows (m), C's columns (n) or K
  const bCuts: number[] = [], mCuts: number[] = [], nCuts: number[] = [], kCuts: number[] = [];
  for (const [v, rowDim] of [[A, transA ? kCuts : mCuts], [B, transB ? nCuts : kCuts]] as const) {
    (v.batched ? bCuts : rowDim).push(...chunkStarts(v.t));
  }
  const kParts = k === 0 ? [[0, 0] as [number, number]] : intervals(k, kCuts, caps.k);
  // partial products over several K pieces are summed in f32; an f16 C is rounded once at the end
  const scratch = kParts.length > 1 && c.dtype === "f16";
  const target = scratch ? Tensor.empty(gpu, c.shape, "f32", { name: "matmul:f32" }) : c;
  const T = matView("matmul", target, "C");
  (T.batched ? bCuts : mCuts).push(...chunkStarts(T.t));
  if (scratch && pl.accumulate) await convertInto(c, target, "matmul");

  const biasType: DType = pl.bias ? pl.bias.dtype : a.dtype;
  const pipes = new Map<string, Promise<GPUComputePipeline>>();
  const pipeline = (vecA: boolean, vecB: boolean, hasBias: boolean, accum: boolean) => {
    const constants = {
      TRANS_A: +transA,
      TRANS_B: +transB,
      VEC_A: +vecA,
      VEC_B: +vecB,
      HAS_BIAS: +hasBias,
      ACCUM: +accum,
    };
    const key = JSON.stringify(constants);
    let p = pipes.get(key);
    if (!p) {
      p = gpu.pipeline({
        family: "matmul",
        entry,
        types: { TA: a.dtype, TB: b.dtype, TC: target.dtype, TBIAS: biasType },
        constants,
      });
      pipes.set(key, p);
    }
    return p;
  };

  for (const [b0, b1] of intervals(batch, bCuts, texel ? 1 : MAX_GROUPS)) {
    for (const [m0, m1] of intervals(m, mCuts, caps.m)) {
      for (const [n0, n1] of intervals(n, nCuts, caps.n)) {
        for (let ki = 0; ki < kParts.length; ki++) {
          const [k0, k1] = kParts[ki];
          const first = ki === 0;
          const la = transA ? locate(A, b0, k0, m0) : locate(A, b0, m0, k0);
          const lb = transB ? locate(B, b0, n0, k0) : locate(B, b0, k0, n0);
          const lc = locate(T, b0, m0, n0);
          if (kernel === "rows") {
            const bs = (v: MatView, l: { bs: number }) => v.batched ? l.bs : 0;
            await gemmRows(gpu, {
              a: { buf: la.buf, dtype: a.dtype, off: la.off, ld: A.cols, bs: bs(A, la) },
              b: {
                buf: lb.buf,
                buf4: vec4Binding(gpu, lb.buf, b.dtype),
                dtype: b.dtype,
                off: lb.off,
                ld: B.cols,
                bs: bs(B, lb),
              },
              c: { buf: lc.buf, dtype: target.dtype, off: lc.off, ld: T.cols, bs: bs(T, lc) },
              transA,
              transB,
              m: m1 - m0,
              n: n1 - n0,
              k: k1 - k0,
              batch: b1 - b0,
              alpha: pl.alpha,
              accumulate: !first || pl.accumulate,
              bias: first && pl.bias ? { buf: pl.bias.buffer, dtype: pl.bias.dtype, off: n0 } : undefined,
              splitK: pl.splitK ?? true,
            });
            continue;
          }
          if (texel) {
            await gemmTexel(gpu, {
              a: { buf: la.buf, dtype: a.dtype, off: la.off, ld: A.cols, trans: transA },
              b: { buf: lb.buf, dtype: b.dtype, off: lb.off, ld: B.cols, trans: transB },
              c: { buf: lc.buf, dtype: target.dtype, off: lc.off, ld: T.cols },
              m: m1 - m0,
              n: n1 - n0,
              k: k1 - k0,
              alpha: pl.alpha,
              accumulate: !first || pl.accumulate,
              bias: first && pl.bias ? { buf: pl.bias.buffer, dtype: pl.bias.dtype, off: n0 } : undefined,
            });
            continue;
          }
          const splittable = kernel === "skinny" && (pl.splitK ?? !gpu.isCpuAdapter) && b1 - b0 === 1 &&
            kParts.length === 1;
          if (splittable && !A.batched && !B.batched) {
            const split = skinnySplit(m1 - m0, n1 - n0, k1 - k0);
            if (split.slices > 1 && split.slices * (m1 - m0) * (n1 - n0) * 4 <= gpu.maxBindingBytes) {
              await skinnySplitK(gpu, { a, b, target, transA, transB, la, lb, lc, A, B, T, pl, n0 }, {
                m: m1 - m0,
                n: n1 - n0,
                k: k1 - k0,
                ...split,
              });
              continue;
            }
          }
          const vecA = la.off % 4 === 0 && A.cols % 4 === 0 && la.bs % 4 === 0;
          const vecB = lb.off % 4 === 0 && B.cols % 4 === 0 && lb.bs % 4 === 0;
          const hasBias = first && !!pl.bias;
          const accum = !first || pl.accumulate;
          const pipe = await pipeline(vecA, vecB, hasBias, accum);
          const u = words(
            m1 - m0,
            n1 - n0,
            k1 - k0,
            la.off,
            A.cols,
            A.batched ? la.bs : 0,
            lb.off,
            B.cols,
            B.batched ? lb.bs : 0,
            lc.off,
            T.cols,
            T.batched ? lc.bs : 0,
            hasBias ? n0 : 0,
            { f: pl.alpha },
            0,
            0,
            0,
            0,
            0,
            0,
          );
          const biasBuf = pl.bias ? pl.bias.buffer : la.buf;
          const naive = entry === "mm_naive";
          gpu.dispatch(
            `matmul(${entry})`,
            pipe,
            [
              la.buf,
              naive ? null : vec4Binding(gpu, la.buf, a.dtype),
              lb.buf,
              naive ? null : vec4Binding(gpu, lb.buf, b.dtype),
              biasBuf,
              lc.buf,
            ],
            [Math.ceil((n1 - n0) / tileN), Math.ceil((m1 - m0) / tileM), b1 - b0],
            u,
          );
        }
      }
    }
  }
  if (scratch) {
    await convertInto(target, c, "matmul");
    target.dispose();
  }
}

/** Operands of one piece of a product, as {@link matmulInto} located them. */
interface Piece {
  a: Tensor;
  b: Tensor;
  target: Tensor;
  transA: boolean;
  transB: boolean;
  la: { buf: GPUBuffer; off: number };
  lb: { buf: GPUBuffer; off: number };
  lc: { buf: GPUBuffer; off: number };
  A: MatView;
  B: MatView;
  T: MatView;
  pl: Plan;
  /** First column of C in this piece (the bias offset). */
  n0: number;
}

/**
 * A skinny product split along K: the slices run as one batched mm_skinny into an f32 scratch
 * [slices, m, n] (the last, shorter slice as a second dispatch), then mm_reduce sums them into C with
 * alpha, the bias and accumulation. More workgroups for products whose C has few blocks but K is long.
 */
async function skinnySplitK(
  gpu: Gpu,
  pc: Piece,
  d: { m: number; n: number; k: number; slices: number; kc: number },
): Promise<void> {
  const { m, n, k, slices, kc } = d;
  const full = Math.floor(k / kc), rem = k - full * kc;
  const scratch = Tensor.empty(gpu, [slices * m * n], "f32", { name: "matmul:splitK" });
  const types = { TA: pc.a.dtype, TB: pc.b.dtype, TC: "f32" as DType, TBIAS: "f32" as DType };
  // slice s starts s·kc along K: columns of stored A (rows when transposed), rows of stored B (columns)
  const aStep = pc.transA ? kc * pc.A.cols : kc, bStep = pc.transB ? kc : kc * pc.B.cols;
  for (const [s0, count, len] of [[0, full, kc], [full, rem ? 1 : 0, rem]]) {
    if (!count) continue;
    const aOff = pc.la.off + s0 * aStep, bOff = pc.lb.off + s0 * bStep;
    const vecA = aOff % 4 === 0 && pc.A.cols % 4 === 0 && aStep % 4 === 0;
    const vecB = bOff % 4 === 0 && pc.B.cols % 4 === 0 && bStep % 4 === 0;
    const pipe = await gpu.pipeline({
      family: "matmul",
      entry: "mm_skinny",
      types,
      constants: {
        TRANS_A: +pc.transA,
        TRANS_B: +pc.transB,
        VEC_A: +vecA,
        VEC_B: +vecB,
        HAS_BIAS: 0,
        ACCUM: 0,
      },
    });
    const u = words(
      m,
      n,
      len,
      aOff,
      pc.A.cols,
      aStep,
      bOff,
      pc.B.cols,
      bStep,
      s0 * m * n,
      n,
      m * n,
      0,
      {
        f: 1,
      },
      0,
      0,
      0,
      0,
      0,
      0,
    );
    gpu.dispatch(
      "matmul(mm_skinny, split K)",
      pipe,
      [
        pc.la.buf,
        vec4Binding(gpu, pc.la.buf, pc.a.dtype),
        pc.lb.buf,
        vec4Binding(gpu, pc.lb.buf, pc.b.dtype),
        pc.la.buf,
        scratch.buffer,
      ],
      [Math.ceil(n / 512), Math.ceil(m / 4), count],
      u,
    );
  }
  const bias = pc.pl.bias;
  const accum = pc.pl.accumulate;
  const reduce = await gpu.pipeline({
    family: "matmul",
    entry: "mm_reduce",
    types: { TA: "f32", TB: "f32", TC: pc.target.dtype, TBIAS: bias ? bias.dtype : "f32" },
    constants: { HAS_BIAS: +!!bias, ACCUM: +accum },
  });
  gpu.dispatch(
    "matmul(mm_reduce)",
    reduce,
    [scratch.buffer, null, null, null, bias ? bias.buffer : scratch.buffer, pc.lc.buf],
    [Math.ceil(n / 16), Math.ceil(m / 16)],
    words(
      m,
      n,
      slices,
      0,
      n,
      m * n,
      0,
      0,
      0,
      pc.lc.off,
      pc.T.cols,
      0,
      bias ? pc.n0 : 0,
      {
        f: pc.pl.alpha,
      },
      0,
      0,
      0,
      0,
      0,
      0,
    ),
  );
  scratch.dispose();
}

/** Flattens [..., d] to [rows, d] (unchunked tensors, or 2-D ones as they are). */
function as2d(op: string, t: Tensor, what: string): Tensor {
  if (t.shape.length === 2) return t;
  if (t.shape.length < 1) throw new GpuError(op, `${what} must have at least one dimension`);
  const d = t.shape[t.shape.length - 1];
  return t.reshape([t.size / Math.max(1, d), d]);
}

function checkLayout(op: string, layout: string): void {
  if (layout !== "out_in" && layout !== "in_out") {
    throw new GpuError(op, `layout must be "out_in" or "in_out", got ${JSON.stringify(layout)}`);
  }
}

/**
 * y = x·Wᵀ for W stored [out, in] (`out_in`, HF nn.Linear) or y = x·W for W stored [in, out] (`in_out`,
 * GPT-2 Conv1D), plus `bias` (length out). x is [..., in] (leading dims are flattened; a chunked x must be
 * 2-D); y is [..., out]. W may be chunked along dim 0 (out_in: each chunk writes a column slice of y;
 * in_out: each chunk is a K-slice whose partial products are accumulated).
 */
export async function linear(x: Tensor, w: Tensor, opts: LinearOptions): Promise<Tensor> {
  const op = "linear";
  checkLayout(op, opts.layout);
  if (w.shape.length !== 2) throw new GpuError(op, `W must be 2-D, got [${w.shape}]`);
  const outDim = opts.layout === "out_in" ? w.shape[0] : w.shape[1];
  const x2 = as2d(op, x, "x");
  const outShape = [...x.shape.slice(0, -1), outDim];
  const out = opts.out ? as2d(op, opts.out, "out") : undefined;
  if (
    opts.out &&
    (opts.out.shape.length !== outShape.length || opts.out.shape.some((d, i) => d !== outShape[i]))
  ) {
    throw new GpuError(op, `out has shape [${opts.out.shape}], expected [${outShape}]`);
  }
  const y = await matmul(x2, w, {
    transB: opts.layout === "out_in",
    bias: opts.bias,
    out,
    outDtype: opts.outDtype,
    accumulate: opts.accumulate,
    kernel: opts.kernel,
  });
  if (opts.out) return opts.out;
  return y.shape.length === outShape.length ? y : y.reshape(outShape);
}

/**
 * The input gradient of {@link linear}: dx = dy·W for W stored [out, in] (`out_in`), dx = dy·Wᵀ for W
 * stored [in, out] (`in_out`). dy is [..., out]; dx is [..., in]. W may be chunked along dim 0.
 */
export async function linearT(dy: Tensor, w: Tensor, opts: LinearTOptions): Promise<Tensor> {
  const op = "linearT";
  checkLayout(op, opts.layout);
  if (w.shape.length !== 2) throw new GpuError(op, `W must be 2-D, got [${w.shape}]`);
  const inDim = opts.layout === "out_in" ? w.shape[1] : w.shape[0];
  const dy2 = as2d(op, dy, "dy");
  const outShape = [...dy.shape.slice(0, -1), inDim];
  const out = opts.out ? as2d(op, opts.out, "out") : undefined;
  if (
    opts.out &&
    (opts.out.shape.length !== outShape.length || opts.out.shape.some((d, i) => d !== outShape[i]))
  ) {
    throw new GpuError(op, `out has shape [${opts.out.shape}], expected [${outShape}]`);
  }
  const dx = await matmul(dy2, w, {
    transB: opts.layout === "in_out",
    out,
    outDtype: opts.outDtype,
    accumulate: opts.accumulate,
    kernel: opts.kernel,
  });
  if (opts.out) return opts.out;
  return dx.shape.length === outShape.length ? dx : dx.reshape(outShape);
}
