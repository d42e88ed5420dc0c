/**
 * The packed-texture matmul of CPU adapters (`mm_texel` in shaders/matmul.wgsl): each piece of a product
 * first packs its op(A) and op(B) slices into rgba32float textures (`mm_pack`), then runs the
 * register-blocked kernel reading texels. The textures are bound as read-only storage textures: on
 * lavapipe such a load of a vec4 costs about 7 cycles per SIMD group of 8 lanes, against ≈29 for a sampled
 * texture's textureLoad and ≈65 for a storage-buffer vec4 (a per-lane loop with bounds checks; measured by
 * micro-kernels on our 2-core EPYC), so the operand reads get several times cheaper for one extra pass over
 * each operand (quads when the operand's offset and row stride allow).
 *
 * The textures are a per-device workspace, reused by every product (commands run in order, so a later
 * pack cannot overtake an earlier product's reads). Sizes are bucketed (rows to powers of two, texel
 * columns to multiples of 64) so that a handful of textures serves every shape; they are only dropped
 * when the workspace would exceed {@link TEXEL_WORKSPACE_BYTES} and no capture is alive.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { type DType, dtypeBytes } from "../gpu/dtype.ts";
import { words } from "./_chunks.ts";

const texelOff = new WeakSet<Gpu>();

/**
 * Whether `auto` kernel choices on this device (matmul, covariance, the Cholesky update) use the
 * packed-texture kernels: on by default on CPU adapters, never on others. `enabled` switches it for
 * this device (false restores the storage-read kernels `direct`, e.g. as a benchmark baseline).
 */
export function texelKernels(gpu: Gpu, enabled?: boolean): boolean {
  if (enabled === true) texelOff.delete(gpu);
  if (enabled === false) texelOff.add(gpu);
  return gpu.isCpuAdapter && !texelOff.has(gpu);
}

/**
 * Sets the bytes of workspace textures a device keeps before one role's textures are released (tests use a
 * small budget to exercise the release); returns the previous budget.
 */
export function texelWorkspaceBudget(gpu: Gpu, bytes: number): number {
  const ws = workspace(gpu);
  const before = ws.budget;
  ws.budget = bytes;
  return before;
}

/** @internal A 1×1 texture view to bind where a pipeline declares a texture the dispatch does not read. */
export function placeholderTexture(gpu: Gpu): GPUTextureView {
  return workspace(gpu).placeholderTexture;
}

/** Texels of one packed operand slice at most (4 Mi texels = 64 MiB of rgba32float). */
export const TEXEL_SLICE_TEXELS = 1 << 22;
/** Bytes of workspace textures kept per device before they are all released. */
export const TEXEL_WORKSPACE_BYTES = 256 << 20;

interface Workspace {
  textures: Map<string, { tex: GPUTexture; view: GPUTextureView; bytes: number }>;
  bytes: number;
  /** Bytes kept before the role's textures are released (default {@link TEXEL_WORKSPACE_BYTES}). */
  budget: number;
  /** Bound as the bias when there is none, and as the quad view of C when C cannot have one. */
  placeholder: GPUBuffer;
  placeholderQuads: GPUBuffer;
  /** Bound as a texture a pipeline declares but this dispatch does not read. */
  placeholderTexture: GPUTextureView;
}
const workspaces = new WeakMap<Gpu, Workspace>();

function bucketRows(h: number): number {
  let b = 64;
  while (b < h) b *= 2;
  return b;
}

function workspace(gpu: Gpu): Workspace {
  let ws = workspaces.get(gpu);
  if (!ws) {
    ws = {
      textures: new Map(),
      bytes: 0,
      budget: TEXEL_WORKSPACE_BYTES,
      placeholder: gpu.createStorage(16, "matmul texel placeholder"),
      placeholderQuads: gpu.createStorage(16, "matmul texel placeholder (quads)"),
      placeholderTexture: gpu.device.createTexture({
        label: "matmul texel placeholder texture",
        size: [1, 1],
        format: "rgba32float",
        usage: GPUTextureUsage.STORAGE_BINDING,
      }).createView(),
    };
    workspaces.set(gpu, ws);
  }
  return ws;
}

/** A workspace texture of at least w × h texels for a role (`A` or `B`). */
function workspaceTexture(
  gpu: Gpu,
  role: "A" | "B",
  w: number,
  h: number,
): { tex: GPUTexture; view: GPUTextureView } {
  const ws = workspace(gpu);
  const max = gpu.device.limits.maxTextureDimension2D;
  const bw = Math.min(max, Math.max(64, Math.ceil(w / 64) * 64)), bh = Math.min(max, bucketRows(h));
  const key = `${role}:${bw}x${bh}`;
  let e = ws.textures.get(key);
  if (!e) {
    const bytes = bw * bh * 16;
    // (not while a capture may replay products that read them: the workspace then grows instead)
    if (ws.bytes + bytes > ws.budget && ws.textures.size && !gpu.capturing) {
      // recorded work may still read the old textures: submit it before they go. Only this role's go:
      // the product being recorded may already have packed the other role's operand (it reads it next).
      gpu.flush();
      for (const [k, old] of ws.textures) {
        if (!k.startsWith(`${role}:`)) continue;
        gpu.destroyTexture(old.tex, [old.view]);
        ws.textures.delete(k);
        ws.bytes -= old.bytes;
      }
    }
    const tex = gpu.device.createTexture({
      label: `matmul texel workspace ${key}`,
      size: [bw, bh],
      format: "rgba32float",
      usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
    });
    e = { tex, view: tex.createView(), bytes };
    ws.textures.set(key, e);
    ws.bytes += bytes;
  }
  return e;
}

/** A strided slice of a stored operand: element (r, c) of op(X) at off + r·ld + c (or off + c·ld + r). */
export interface PackSource {
  buf: GPUBuffer;
  dtype: DType;
  off: number;
  ld: number;
  trans: boolean;
  /** Valid rows and columns of the slice. */
  rows: number;
  cols: number;
  /** Rows to write (≥ rows; the extra rows are zeros). */
  height: number;
  /**
   * The texels past the last valid column may hold whatever follows in the buffer instead of zeros (true
   * where those columns only feed results that are not stored: op(B)'s columns past n), so that such a
   * slice can still be copied.
   */
  ragged?: boolean;
}

/**
 * Whether a slice can be copied into its texture as is (buffer → texture copy: about 6× faster than the
 * pack kernel on lavapipe): f32, untransposed, 16-byte aligned rows whose stride is a multiple of 256
 * bytes, every texel inside the buffer, and whole texels unless `ragged`.
 */
function copyable(s: PackSource): boolean {
  const tw = Math.ceil(s.cols / 4);
  return s.dtype === "f32" && !s.trans && s.off % 4 === 0 && (s.ld * 4) % 256 === 0 &&
    (s.cols % 4 === 0 || !!s.ragged) && s.rows > 0 &&
    4 * (s.off + (s.rows - 1) * s.ld + 4 * tw) <= s.buf.size;
}

/** Packs a slice into the role's workspace texture and returns the texture's view. */
export async function packTexels(
  gpu: Gpu,
  role: "A" | "B",
  s: PackSource,
  op: string,
): Promise<GPUTextureView> {
  const target = workspaceTexture(gpu, role, Math.ceil(s.cols / 4), s.height);
  await packInto(gpu, target, 0, s, op);
  return target.view;
}

/**
 * @internal Records the packing of a slice into texel columns x0 … of a texture (rows 0 … s.height − 1):
 * a buffer → texture copy where {@link copyable}, else the pack kernel.
 */
export async function packInto(
  gpu: Gpu,
  target: { tex: GPUTexture; view: GPUTextureView },
  x0: number,
  s: PackSource,
  op: string,
): Promise<void> {
  if (copyable(s)) {
    gpu.copyToTexture({
      op: `${op}(texel copy)`,
      src: s.buf,
      offset: 4 * s.off,
      bytesPerRow: 4 * s.ld,
      texture: target.tex,
      width: Math.ceil(s.cols / 4),
      height: s.rows,
      x: x0,
    });
    // the zero rows below it (K padded to a multiple of 4) come from the pack kernel with no valid rows
    if (s.height > s.rows) {
      await packKernel(gpu, { ...s, rows: 0, height: s.height - s.rows }, x0, s.rows, target.view, op);
    }
  } else {
    await packKernel(gpu, s, x0, 0, target.view, op);
  }
}

/** Records mm_pack: rows [0, s.height) of the slice into texture rows row0 …, texel columns x0 …. */
async function packKernel(
  gpu: Gpu,
  s: PackSource,
  x0: number,
  row0: number,
  view: GPUTextureView,
  op: string,
): Promise<void> {
  const tw = Math.ceil(s.cols / 4);
  // quads when every row start is a multiple of 4 elements (and the buffer holds at least one quad)
  const vec = s.off % 4 === 0 && s.ld % 4 === 0 && s.buf.size >= 4 * dtypeBytes(s.dtype);
  const pipe = await gpu.pipeline({
    family: "matmul",
    entry: "mm_pack",
    types: { TA: s.dtype, TB: s.dtype, TC: "f32", TBIAS: "f32" },
    constants: { TRANS_A: +s.trans, VEC_A: +vec },
  });
  const u = words(
    s.rows,
    s.cols,
    s.height,
    s.off,
    s.ld,
    0,
    0,
    0,
    0,
    row0,
    x0,
    0,
    0,
    { f: 1 },
    0,
    0,
    0,
    0,
    0,
    0,
  );
  const none = null;
  const rowsPerThread = vec && s.trans ? 4 : 1;
  gpu.dispatch(
    `${op}(mm_pack)`,
    pipe,
    [s.buf, vec ? s.buf : workspace(gpu).placeholderQuads, none, none, none, none, none, none, view],
    [Math.ceil(tw / 8), Math.ceil(s.height / rowsPerThread / 8)],
    u,
  );
}

/** An operand slice in one buffer: element (r, c) of op(X) at off + r·ld + c, or off + c·ld + r when trans. */
export interface StridedOperand {
  buf: GPUBuffer;
  dtype: DType;
  off: number;
  ld: number;
  trans: boolean;
}

/** Which tiles of a product run, relative to the diagonal of a larger matrix (see {@link gemmTexel}). */
export interface TriangleSpec {
  /** 1: skip tiles strictly below the diagonal; 2: skip tiles strictly above it, store column ≤ row only. */
  mode: 1 | 2;
  /** Row and column of C element (0, 0) in that matrix. */
  row0: number;
  col0: number;
}

/** One product of {@link gemmTexel}: C[m, n] = α·op(A)·op(B) (+ bias) (+ C), operands in single buffers. */
export interface GemmTexelSpec {
  a: StridedOperand;
  b: StridedOperand;
  /** C (row-major, row stride ld). */
  c: { buf: GPUBuffer; dtype: DType; off: number; ld: number };
  m: number;
  n: number;
  k: number;
  alpha?: number;
  accumulate?: boolean;
  /** Bias (n values from element `off`) added once. */
  bias?: { buf: GPUBuffer; dtype: DType; off: number };
  triangle?: TriangleSpec;
  /**
   * op(A) is op(B)'s columns from this one on, transposed (C += XᵀX: one packed X serves both operands,
   * `a` is not packed). Used when it is a multiple of 4 and C fits one texel slice (else `a` is packed).
   */
  gramCol0?: number;
}

function sliceOff(o: StridedOperand, r: number, c: number): number {
  return o.trans ? o.off + c * o.ld + r : o.off + r * o.ld + c;
}

/**
 * @internal Records C = α·op(A)·op(B) (+ bias) (+ C when `accumulate`) with the packed-texture kernel,
 * split into slices the textures can hold. K is split too (each later slice accumulates) when C is f32; an
 * f16 C must come with k ≤ {@link texelCaps}(…).k so that it is rounded once (matmul's f32 scratch does
 * the rest).
 */
export async function gemmTexel(gpu: Gpu, s: GemmTexelSpec, op = "matmul"): Promise<void> {
  const { m, n, k } = s;
  if (m === 0 || n === 0) return;
  const caps = texelCaps(gpu, k);
  if (k > caps.k && s.c.dtype !== "f32") {
    throw new Error(`${op}: K = ${k} exceeds one texture (${caps.k}) with an f16 result`);
  }
  const tri = s.triangle;
  const entryTypes = {
    TA: "f32" as DType,
    TB: "f32" as DType,
    TC: s.c.dtype,
    TBIAS: s.bias?.dtype ?? "f32",
  };
  const kSteps = Math.max(1, Math.ceil(k / caps.k));
  const g0 = s.gramCol0;
  const gram = g0 !== undefined && g0 % 4 === 0 && m <= caps.m && n <= caps.n && g0 + m <= n;
  const pipe = await gpu.pipeline({
    family: "matmul",
    entry: "mm_texel",
    types: entryTypes,
    constants: { RUNTIME_FLAGS: 1, GRAM: +gram },
  });
  for (let m0 = 0; m0 < m; m0 += caps.m) {
    const m1 = Math.min(m, m0 + caps.m);
    for (let ki = 0; ki < kSteps; ki++) {
      const k0 = ki * caps.k, k1 = Math.min(k, k0 + caps.k);
      const kPad = Math.ceil((k1 - k0) / 4) * 4;
      const first = ki === 0;
      const at = gram ? placeholderTexture(gpu) : await packTexels(gpu, "A", {
        buf: s.a.buf,
        dtype: s.a.dtype,
        off: sliceOff(s.a, m0, k0),
        ld: s.a.ld,
        trans: s.a.trans,
        rows: m1 - m0,
        cols: k1 - k0,
        height: m1 - m0,
      }, op);
      for (let n0 = 0; n0 < n; n0 += caps.n) {
        const n1 = Math.min(n, n0 + caps.n);
        // with a triangle, slices that lie wholly on the skipped side are not dispatched at all
        if (tri?.mode === 1 && tri.col0 + n1 <= tri.row0 + m0) continue;
        if (tri?.mode === 2 && tri.col0 + n0 >= tri.row0 + m1) continue;
        const bt = await packTexels(gpu, "B", {
          buf: s.b.buf,
          dtype: s.b.dtype,
          off: sliceOff(s.b, k0, n0),
          ld: s.b.ld,
          trans: s.b.trans,
          rows: k1 - k0,
          cols: n1 - n0,
          height: kPad,
          ragged: true,
        }, op);
        const hasBias = first && !!s.bias;
        const accumulate = !first || (s.accumulate ?? false);
        const cOff = s.c.off + m0 * s.c.ld + n0;
        const quads = cOff % 4 === 0 && s.c.ld % 4 === 0 && s.c.buf.size >= 4 * dtypeBytes(s.c.dtype);
        const flags = (hasBias ? 1 : 0) | (accumulate ? 2 : 0) | ((tri?.mode ?? 0) << 2) | (quads ? 16 : 0);
        const u = words(
          m1 - m0,
          n1 - n0,
          kPad,
          gram ? g0! : 0,
          0,
          0,
          0,
          0,
          0,
          cOff,
          s.c.ld,
          0,
          hasBias ? s.bias!.off + n0 : 0,
          { f: s.alpha ?? 1 },
          tri ? tri.row0 + m0 : 0,
          tri ? tri.col0 + n0 : 0,
          flags,
          0,
          0,
          0,
        );
        gpu.dispatch(
          `${op}(mm_texel)`,
          pipe,
          [
            null,
            null,
            null,
            null,
            s.bias?.buf ?? workspace(gpu).placeholder,
            s.c.buf,
            at,
            bt,
            null,
            quads ? s.c.buf : workspace(gpu).placeholderQuads,
          ],
          [Math.ceil((n1 - n0) / 128), Math.ceil((m1 - m0) / 128)],
          u,
        );
      }
    }
  }
}

/** Largest slice sizes of one texel piece: rows of C, columns of C and K (all bounded by the textures). */
export function texelCaps(gpu: Gpu, k: number): { m: number; n: number; k: number } {
  const max = gpu.device.limits.maxTextureDimension2D;
  const kCap = Math.floor(max / 4) * 4;
  const kPad = Math.ceil(Math.min(k, kCap) / 4) * 4 || 4;
  const m = Math.min(max, Math.max(128, Math.floor(TEXEL_SLICE_TEXELS / (kPad / 4) / 128) * 128));
  const n = Math.min(4 * max, Math.max(512, Math.floor((4 * TEXEL_SLICE_TEXELS) / kPad / 128) * 128));
  return { m, n, k: kCap };
}
