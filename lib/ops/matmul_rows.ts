/**
 * The few-rows matmul of CPU adapters (`mm_rows` in shaders/matmul.wgsl): each thread accumulates up to
 * 64 rows × 16 columns of C, so op(B) — usually a weight such as the LM head's embedding matrix — is
 * streamed from storage once per group of up to 64 rows instead of once per 4 rows (`skinny`) or read
 * packed through a 128-row tile that is mostly padding (`texel`). op(A) (the few rows) is packed into a texture
 * first: its reads are the same for every SIMD lane, and texel fetches are cheap on lavapipe. Products
 * whose C has few blocks but a long K (the LM head's backward, dlogits [R, V] · E [V, d]) are split along
 * K into f32 partial products that `mm_reduce` sums. An op(B) in a frozen buffer (lib/ops/matmul_frozen.ts)
 * is read from a texture packed once (its K slices side by side) instead of from storage.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { Tensor } from "../gpu/tensor.ts";
import { words } from "./_chunks.ts";
import { packInto, packTexels, placeholderTexture } from "./matmul_texel.ts";
import { frozenTexture, isFrozen } from "./matmul_frozen.ts";

/** Rows of C one thread of mm_rows holds at most (16 blocks of 4). */
export const ROWS_PER_THREAD = 64;
/** 4-column blocks per thread of mm_rows. */
const ROWS_COLB = 4;
/** Columns of C one workgroup of mm_rows covers (8 threads). */
const ROWS_TILE_N = 32 * ROWS_COLB;
/** A product with fewer workgroups than this and K ≥ 2·ROWS_SLICE_MIN is split along K. */
const ROWS_SPLIT_GROUPS = 16;
/** K per slice at least. */
const ROWS_SLICE_MIN = 1024;

/**
 * 4-row blocks per thread and row groups for m rows: the groups balanced (70 rows → 2 × 36, not 64 + 6),
 * more than 4 blocks rounded up to an even count so that few pipelines serve every row count.
 */
export function rowsBlocking(m: number): { rowb: number; groups: number } {
  const groups = Math.max(1, Math.ceil(m / ROWS_PER_THREAD));
  const rowb = Math.max(1, Math.ceil(Math.ceil(m / groups) / 4));
  return { rowb: rowb > 4 ? Math.min(ROWS_PER_THREAD / 4, rowb + (rowb % 2)) : rowb, groups };
}

/** K slices of an unbatched mm_rows product: 1 when its C already has enough workgroups or K is short. */
export function rowsSplit(m: number, n: number, k: number): { slices: number; kc: number } {
  const groups = Math.ceil(n / ROWS_TILE_N) * rowsBlocking(m).groups;
  const want = Math.min(Math.ceil(ROWS_SPLIT_GROUPS / groups), Math.floor(k / ROWS_SLICE_MIN));
  if (groups >= ROWS_SPLIT_GROUPS || want < 2) return { slices: 1, kc: k };
  const kc = Math.ceil(Math.ceil(k / want) / 4) * 4;
  return { slices: Math.ceil(k / kc), kc };
}

/** Largest rows and K of one mm_rows piece (op(A) is packed into one texture: m rows × k/4 texels). */
export function rowsCaps(gpu: Gpu): { m: number; k: number } {
  const max = gpu.device.limits.maxTextureDimension2D;
  return { m: max, k: 4 * max };
}

/** A stored operand of {@link gemmRows}: buffer, offset, row stride and batch stride (elements). */
export interface RowsOperand {
  buf: GPUBuffer;
  dtype: DType;
  off: number;
  ld: number;
  bs: number;
}

/** One product of {@link gemmRows}: C = α·op(A)·op(B) (+ bias) (+ C), for each of `batch` matrices. */
export interface RowsSpec {
  a: RowsOperand;
  /** op(B), and its vec4 view (see matmul's vec4Binding). */
  b: RowsOperand & { buf4: GPUBuffer };
  c: { buf: GPUBuffer; dtype: DType; off: number; ld: number; bs: number };
  transA: boolean;
  transB: boolean;
  /** m ≤ and k ≤ {@link rowsCaps}. */
  m: number;
  n: number;
  k: number;
  batch: number;
  alpha: number;
  accumulate: boolean;
  /** n bias values from element `off` (added once). */
  bias?: { buf: GPUBuffer; dtype: DType; off: number };
  /** Allow the split along K. */
  splitK: boolean;
}

/** @internal Records mm_rows products (split along K through an f32 scratch when that pays). */
export async function gemmRows(gpu: Gpu, s: RowsSpec, op = "matmul"): Promise<void> {
  const { m, n, k } = s;
  if (m === 0 || n === 0 || s.batch === 0) return;
  const { rowb, groups } = rowsBlocking(m);
  let split = s.splitK ? rowsSplit(m, n, k) : { slices: 1, kc: k };
  if (split.slices * m * n * 4 > gpu.maxBindingBytes) split = { slices: 1, kc: k };
  const { slices, kc } = split;
  const gx = Math.ceil(n / ROWS_TILE_N);
  // slice j of a split product starts bStep elements after slice j − 1 in B
  const bStep = s.transB ? kc : kc * s.b.ld;
  const bTex = s.batch === 1 && isFrozen(gpu, s.b.buf) ? await frozenB(gpu, s, slices, kc, bStep, op) : null;
  const tw = Math.ceil(n / 4);
  const bt = bTex ?? placeholderTexture(gpu);
  const pipe = (tc: DType, tbias: DType, vecB: boolean, bias: boolean, accum: boolean) =>
    gpu.pipeline({
      family: "matmul",
      entry: "mm_rows",
      types: { TA: "f32", TB: s.b.dtype, TC: tc, TBIAS: tbias },
      constants: {
        TRANS_B: +s.transB,
        VEC_B: +(vecB && !bTex),
        B_TEX: +!!bTex,
        HAS_BIAS: +bias,
        ACCUM: +accum,
        ROWB: rowb,
        COLB: ROWS_COLB,
      },
    });
  const vecB = (off: number, bs: number) => off % 4 === 0 && s.b.ld % 4 === 0 && bs % 4 === 0;
  const scratch = slices > 1
    ? Tensor.empty(gpu, [slices * m * n], "f32", { name: "matmul:rows split K" })
    : null;
  for (let bi = 0; bi < s.batch; bi++) {
    const aOff = s.a.off + bi * s.a.bs, bOff0 = s.b.off + bi * s.b.bs, cOff = s.c.off + bi * s.c.bs;
    const at = await packTexels(gpu, "A", {
      buf: s.a.buf,
      dtype: s.a.dtype,
      off: aOff,
      ld: s.a.ld,
      trans: s.transA,
      rows: m,
      cols: k,
      height: m,
    }, op);
    if (!scratch) {
      const p = await pipe(s.c.dtype, s.bias?.dtype ?? "f32", vecB(bOff0, 0), !!s.bias, s.accumulate);
      const u = words(
        m,
        n,
        k,
        0,
        0,
        0,
        bTex ? 0 : bOff0,
        s.b.ld,
        0,
        cOff,
        s.c.ld,
        0,
        s.bias?.off ?? 0,
        {
          f: s.alpha,
        },
        0,
        0,
        0,
        0,
        0,
        0,
      );
      const bias = s.bias?.buf ?? s.b.buf;
      gpu.dispatch(
        `${op}(mm_rows)`,
        p,
        [null, null, s.b.buf, s.b.buf4, bias, s.c.buf, at, bt],
        [gx, groups],
        u,
      );
      continue;
    }
    // slice j covers K [j·kc, (j+1)·kc): the slices run as a batch whose strides step along K
    const full = Math.floor(k / kc), rem = k - full * kc;
    for (const [s0, count, len] of [[0, full, kc], [full, rem ? 1 : 0, rem]]) {
      if (!count) continue;
      const bOff = bOff0 + s0 * bStep;
      const p = await pipe("f32", "f32", vecB(bOff, bStep), false, false);
      const u = words(
        m,
        n,
        len,
        s0 * kc,
        0,
        kc,
        bTex ? s0 * tw : bOff,
        s.b.ld,
        bTex ? tw : bStep,
        s0 * m * n,
        n,
        m * n,
        0,
        { f: 1 },
        0,
        0,
        0,
        0,
        0,
        0,
      );
      gpu.dispatch(
        `${op}(mm_rows, split K)`,
        p,
        [null, null, s.b.buf, s.b.buf4, s.b.buf, scratch.buffer, at, bt],
        [gx, groups, count],
        u,
      );
    }
    const reduce = await gpu.pipeline({
      family: "matmul",
      entry: "mm_reduce",
      types: { TA: "f32", TB: "f32", TC: s.c.dtype, TBIAS: s.bias?.dtype ?? "f32" },
      constants: { HAS_BIAS: +!!s.bias, ACCUM: +s.accumulate },
    });
    const u = words(
      m,
      n,
      slices,
      0,
      n,
      m * n,
      0,
      0,
      0,
      cOff,
      s.c.ld,
      0,
      s.bias?.off ?? 0,
      {
        f: s.alpha,
      },
      0,
      0,
      0,
      0,
      0,
      0,
    );
    gpu.dispatch(
      `${op}(mm_reduce)`,
      reduce,
      [scratch.buffer, null, null, null, s.bias?.buf ?? scratch.buffer, s.c.buf],
      [Math.ceil(n / 16), Math.ceil(m / 16)],
      u,
    );
  }
  scratch?.dispose();
}

/**
 * The frozen texture of op(B) for one unbatched product split into `slices` K slices of `kc` rows: slice
 * j at texel columns j·⌈n/4⌉ …, rows 0 … kc − 1 (zeros past each slice's K, padded to 4). Null when op(B)'s
 * buffer is not frozen or the texture does not fit (then mm_rows reads storage).
 */
function frozenB(
  gpu: Gpu,
  s: RowsSpec,
  slices: number,
  kc: number,
  bStep: number,
  op: string,
): Promise<GPUTextureView | null> {
  const tw = Math.ceil(s.n / 4), pad4 = (x: number) => Math.ceil(x / 4) * 4;
  const key = `${s.b.dtype}:${s.b.off}:${s.b.ld}:${s.transB ? "T" : "N"}:${s.k}×${s.n}/${slices}×${kc}`;
  return frozenTexture(gpu, s.b.buf, key, slices * tw, pad4(Math.min(kc, s.k)), async (target) => {
    for (let j = 0; j < slices; j++) {
      const len = Math.min(kc, s.k - j * kc);
      await packInto(gpu, target, j * tw, {
        buf: s.b.buf,
        dtype: s.b.dtype,
        off: s.b.off + j * bStep,
        ld: s.b.ld,
        trans: s.transB,
        rows: len,
        cols: s.n,
        height: pad4(len),
        ragged: true,
      }, `${op}(frozen B)`);
    }
  });
}
