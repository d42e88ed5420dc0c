/**
 * Symmetric positive-definite solves on the GPU: a blocked right-looking Cholesky factorisation
 * C + λI = L Lᵀ (f32), computed once and reused for many right-hand sides (ROME's u = C⁻¹k*).
 *
 * Each 64-column block step gathers the block column into a compact panel, factors its diagonal
 * block in one workgroup (checking every pivot), solves the rows below against it, writes the panel
 * back and subtracts its symmetric rank-64 product from the trailing lower triangle (the Gram kernels
 * of lib/ops/covariance.ts, with the panel stored transposed).
 * C and L may be row-chunked (d = 16384 is 1 GiB in f32, eight 128 MiB chunks); the panel
 * (d × 64 f32) and the diagonal blocks (d × 64 f32) are single buffers of at most 4 MiB each.
 * Solves run a blocked forward substitution with L and a backward one with Lᵀ.
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { rowRuns, words } from "./_chunks.ts";
import { dispatchGram, type GramKernel, gramPipeline, resolveGramKernel } from "./covariance.ts";
import { gemmTexel } from "./matmul_texel.ts";

/** Block width of the factorisation (the WGSL constant NB). */
export const CHOLESKY_BLOCK = 64;
const NB = CHOLESKY_BLOCK;
const MAX_GRID = 65535;
/** Block steps between two readbacks of the pivot status during a factorisation. */
const CHECK_EVERY = 32;

/** Options of {@link choleskyFactor}. */
export interface CholeskyOptions {
  /** Tikhonov damping λ added to the diagonal before factoring (default 0). */
  damping?: number;
  /**
   * Factor in C's own buffers (C is overwritten by L; saves d²·4 bytes). The returned factor's `L`
   * is then `c` itself. Default false: C is left unchanged.
   */
  inPlace?: boolean;
  /** Kernel of the trailing (Gram) update, see {@link GramKernel} (default `auto`). */
  kernel?: GramKernel;
}

/** Uniform block of shaders/cholesky.wgsl (`Params`). */
function params(
  p: {
    d: number;
    k?: number;
    m?: number;
    r0?: number;
    rows?: number;
    off?: number;
    blk?: number;
    nrhs?: number;
    lambda?: number;
  },
): Uint32Array {
  return words(
    p.d,
    p.k ?? 0,
    p.m ?? 0,
    p.r0 ?? 0,
    p.rows ?? 0,
    p.off ?? 0,
    p.blk ?? 0,
    p.nrhs ?? 0,
    { f: p.lambda ?? 0 },
    0,
    0,
    0,
  );
}

function pipe(t: Tensor, entry: string): Promise<GPUComputePipeline> {
  return t.gpu.pipeline({ family: "cholesky", entry });
}

/**
 * A Cholesky factor C + λI = L Lᵀ living on the GPU, reusable for any number of solves.
 * Call {@link CholeskyFactor.dispose} to free L (unless it was factored in place) and its buffers.
 */
export class CholeskyFactor {
  /** The lower-triangular factor L [d, d] (f32, zeros above the diagonal, possibly row-chunked). */
  readonly L: Tensor;
  /** Matrix size. */
  readonly d: number;
  /** The damping λ that was added to C's diagonal. */
  readonly damping: number;
  readonly #diag: GPUBuffer;
  readonly #ownsL: boolean;
  #disposed = false;

  /** @internal Use {@link choleskyFactor}. */
  constructor(l: Tensor, diag: GPUBuffer, damping: number, ownsL: boolean) {
    this.L = l;
    this.d = l.shape[0];
    this.#diag = diag;
    this.damping = damping;
    this.#ownsL = ownsL;
  }

  /**
   * Returns x with (C + λI) x = b, for b of shape [d] or [d, r] (f32, unchunked; r right-hand sides),
   * by a forward solve with L and a backward solve with Lᵀ. `b` is not modified; the result is a new
   * tensor of b's shape (the caller disposes it). The dispatches are recorded, not awaited.
   */
  async solve(b: Tensor): Promise<Tensor> {
    const op = "choleskySolve";
    if (this.#disposed) throw new GpuError(op, "the factor was disposed");
    const l = this.L, d = this.d, gpu = l.gpu;
    if (b.gpu !== gpu) throw new GpuError(op, "b lives on another device than the factor");
    if (b.dtype !== "f32") throw new GpuError(op, `b must be f32, got ${b.dtype}`);
    if (b.shape.length < 1 || b.shape.length > 2 || b.shape[0] !== d) {
      throw new GpuError(op, `b must be [${d}] or [${d}, r], got [${b.shape}]`);
    }
    const nrhs = b.rowSize;
    if (nrhs > MAX_GRID) {
      throw new GpuError(op, `at most ${MAX_GRID} right-hand sides per solve, got ${nrhs}`);
    }
    const x = Tensor.empty(gpu, b.shape, "f32", { name: "cholesky.x" });
    if (d === 0 || nrhs === 0) return x;
    const bBuf = b.buffer, xBuf = x.buffer; // both unchunked (throws a clear error otherwise)
    gpu.copy(bBuf, 0, xBuf, 0, b.byteLength);
    const [fwdDiag, fwdUpd, bwdDiag, bwdUpd] = await Promise.all(
      ["fwd_diag", "fwd_update", "bwd_diag", "bwd_update"].map((e) => pipe(l, e)),
    );
    const rhsGroups = Math.ceil(nrhs / 64);
    const blocks = Math.ceil(d / NB);
    for (let blk = 0; blk < blocks; blk++) { // L y = b
      const k = blk * NB, m = Math.min(NB, d - k);
      gpu.dispatch(
        op,
        fwdDiag,
        [null, null, this.#diag, null, xBuf],
        [rhsGroups],
        params({ d, k, m, blk, nrhs }),
      );
      for (const s of rowRuns(l, k + m, d, MAX_GRID * 64)) {
        gpu.dispatch(
          op,
          fwdUpd,
          [l.chunks[s.chunk], null, null, null, xBuf],
          [Math.ceil(s.rows / 64), nrhs],
          params({ d, k, m, r0: s.row, rows: s.rows, off: s.offset, nrhs }),
        );
      }
    }
    for (let blk = blocks - 1; blk >= 0; blk--) { // Lᵀ x = y
      const k = blk * NB, m = Math.min(NB, d - k);
      gpu.dispatch(
        op,
        bwdDiag,
        [null, null, this.#diag, null, xBuf],
        [rhsGroups],
        params({ d, k, m, blk, nrhs }),
      );
      if (k === 0) continue;
      for (const s of rowRuns(l, k, k + m)) {
        gpu.dispatch(
          op,
          bwdUpd,
          [l.chunks[s.chunk], null, null, null, xBuf],
          [Math.ceil(k / 256), nrhs],
          params({ d, k, m, r0: s.row, rows: s.rows, off: s.offset, nrhs }),
        );
      }
    }
    return x;
  }

  /** Frees L (unless factored in place, when L is the caller's C) and the cached diagonal blocks. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#ownsL) this.L.dispose();
    this.L.gpu.release(this.#diag);
  }
}

/**
 * Factors C + λI = L Lᵀ on the GPU (C f32 [d, d], symmetric positive definite, only its lower
 * triangle is read; it may be row-chunked). Throws a GpuError naming the op, the pivot index and its
 * value when the matrix is not positive definite (a non-positive or non-finite pivot, detected on the
 * GPU; the status is read back every 32 block steps and at the end, so the call waits for the GPU).
 */
export async function choleskyFactor(c: Tensor, opts: CholeskyOptions = {}): Promise<CholeskyFactor> {
  const op = "choleskyFactor";
  const gpu = c.gpu;
  if (c.dtype !== "f32") throw new GpuError(op, `C must be f32, got ${c.dtype}`);
  if (c.shape.length !== 2 || c.shape[0] !== c.shape[1]) {
    throw new GpuError(op, `C must be square [d, d], got [${c.shape}]`);
  }
  const damping = opts.damping ?? 0;
  if (!Number.isFinite(damping)) throw new GpuError(op, `damping must be finite, got ${damping}`);
  const d = c.shape[0];
  const ownsL = !opts.inPlace;
  const l = ownsL ? Tensor.empty(gpu, c.shape, "f32", { name: "cholesky.L" }) : c;
  const blocks = Math.max(1, Math.ceil(d / NB));
  const diag = gpu.createStorage(blocks * NB * NB * 4, "cholesky.diag");
  const factor = new CholeskyFactor(l, diag, damping, ownsL);
  if (d === 0) return factor;
  const panel = gpu.createStorage(d * NB * 4, "cholesky.panel");
  const status = gpu.createStorage(16, "cholesky.status");
  try {
    gpu.write(status, 0, new Uint32Array(4));
    if (ownsL) {
      for (let i = 0; i < c.chunks.length; i++) {
        gpu.copy(c.chunks[i], 0, l.chunks[i], 0, c.chunkRows(i) * d * 4);
      }
    }
    const names = ["add_diag", "gather", "diag", "trsm", "scatter", "tril"];
    const [addDiag, gather, diagP, trsm, scatter, tril] = await Promise.all(names.map((e) => pipe(l, e)));
    const kernel = resolveGramKernel(gpu, opts.kernel);
    const gram = kernel === "texel" ? undefined : await gramPipeline(gpu, "f32", kernel);
    if (damping !== 0) {
      for (const s of rowRuns(l, 0, d, MAX_GRID * 256)) {
        gpu.dispatch(
          op,
          addDiag,
          [l.chunks[s.chunk]],
          [Math.ceil(s.rows / 256)],
          params({
            d,
            r0: s.row,
            rows: s.rows,
            off: s.offset,
            lambda: damping,
          }),
        );
      }
    }
    const failed = async (): Promise<void> => {
      const st = await gpu.read(status, 0, 12);
      const flag = new Uint32Array(st);
      if (flag[0] === 0) return;
      const value = new Float32Array(st)[2];
      throw new GpuError(
        op,
        `matrix [${d}, ${d}] is not positive definite${damping ? ` after damping λ = ${damping}` : ""}: ` +
          `pivot ${flag[1]} is ${value} (must be finite and > 0); increase the damping or check C`,
      );
    };
    for (let blk = 0; blk < blocks; blk++) {
      // a failed pivot makes the rest garbage: look every CHECK_EVERY blocks so that a large
      // non-SPD matrix fails in a fraction of the factorisation time
      if (blk > 0 && blk % CHECK_EVERY === 0) await failed();
      const k = blk * NB, m = Math.min(NB, d - k);
      const runs = rowRuns(l, k, d, MAX_GRID * 4);
      // rows k… of L ↔ the panel buffer (gather before the panel work, scatter after)
      const copyPanel = (pipe: GPUComputePipeline) => {
        for (const s of runs) {
          const p = params({ d, k, m, r0: s.row, rows: s.rows, off: s.offset });
          gpu.dispatch(op, pipe, [l.chunks[s.chunk], panel], [1, Math.ceil(s.rows / 4)], p);
        }
      };
      copyPanel(gather);
      gpu.dispatch(op, diagP, [null, panel, diag, status], [1], params({ d, k, m, blk }));
      if (d - k > m) {
        gpu.dispatch(
          op,
          trsm,
          [null, panel],
          [Math.ceil((d - k - m) / 64)],
          params({ d, k, m, rows: d - k }),
        );
      }
      copyPanel(scatter);
      if (d - k > m && !gram) {
        // the same update as one product per run of L rows: C = rows s of L, columns k + m … (lower part)
        for (const s of rowRuns(l, k + m, d)) {
          await gemmTexel(gpu, {
            a: { buf: panel, dtype: "f32", off: s.row - k, ld: d, trans: true },
            b: { buf: panel, dtype: "f32", off: m, ld: d, trans: false },
            c: { buf: l.chunks[s.chunk], dtype: "f32", off: s.offset + k + m, ld: d },
            m: s.rows,
            n: s.row + s.rows - (k + m),
            k: m,
            alpha: -1,
            accumulate: true,
            triangle: { mode: 2, row0: s.row, col0: k + m },
          }, op);
        }
      } else if (d - k > m && gram) {
        // trailing update A[i, j] -= Σ_p PT[p, i − k]·PT[p, j − k], k + m ≤ j ≤ i: a Gram update of PT
        for (const s of rowRuns(l, k + m, d, MAX_GRID * gram.tile)) {
          dispatchGram(gpu, op, gram, panel, l.chunks[s.chunk], {
            n: m,
            ldx: d,
            xOff: 0,
            xshift: k,
            xcols: d - k,
            grow0: s.row,
            rows: s.rows,
            c0: k + m,
            cols: s.row + s.rows - (k + m),
            cOff: s.offset,
            ldc: d,
            mode: 2,
            sign: -1,
          });
        }
      }
    }
    for (const s of rowRuns(l, 0, d, MAX_GRID)) {
      gpu.dispatch(
        op,
        tril,
        [l.chunks[s.chunk]],
        [Math.ceil(d / 256), s.rows],
        params({
          d,
          r0: s.row,
          rows: s.rows,
          off: s.offset,
        }),
      );
    }
    await failed();
    return factor;
  } catch (e) {
    factor.dispose();
    throw e;
  } finally {
    gpu.release(panel);
    gpu.release(status);
  }
}
