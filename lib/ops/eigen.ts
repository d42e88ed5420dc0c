/**
 * Symmetric eigen-decomposition on the GPU (shaders/eigen.wgsl): parallel cyclic Jacobi in f32 with the
 * relative skip criterion, m/2 rotations per round, m − 1 rounds per sweep, until a sweep rotates nothing
 * (or `maxSweeps`). One sweep is 2(m − 1) dispatches recorded in one go; the rotation count is read back
 * once per sweep. Cost per sweep ≈ 3n³ multiply-adds (rows, columns, V). The n×n matrix must fit one
 * storage binding (n ≤ 5792 at lavapipe's 128 MiB; n = 14,336 needs 822 MB bindings, as GPUs give);
 * {@link checkEigenFits} is the check and its error names the limit and the fix.
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { F32_EPS } from "../gpu/dtype.ts";
import { words } from "./_chunks.ts";
import { countNonFinite } from "./elementwise.ts";

/** Options of {@link symmetricEigen}. */
export interface EigenOptions {
  /** Relative skip threshold: a pair rotates only if |a_pq| > tol·√|a_pp a_qq| (default 4·eps_f32). */
  tol?: number;
  /** Sweeps at most (default 30). */
  maxSweeps?: number;
}

/** Result of {@link symmetricEigen}. */
export interface EigenResult {
  /** Eigenvalues, ascending. */
  values: Float32Array;
  /** Eigenvectors [n, n] f32: column j belongs to values[j]. */
  vectors: Tensor;
  /** Sweeps run. */
  sweeps: number;
  /** Whether the last sweep rotated nothing. */
  converged: boolean;
}

/**
 * Throws a GpuError naming the limit and the fix when an n×n f32 matrix does not fit one storage binding
 * of `maxBindingBytes` (keg's cap: the device's maxStorageBufferBindingSize, `limit`, and maxBufferSize).
 * n = 14,336 (Llama-3-8B / Mistral d_ff) needs 822 MB: GPUs allow ≥ 1 GiB, lavapipe 128 MiB (n ≤ 5,792).
 */
export function checkEigenFits(maxBindingBytes: number, n: number, limit = maxBindingBytes): void {
  const need = n * n * 4;
  if (need <= maxBindingBytes) return;
  throw new GpuError(
    "symmetricEigen",
    `C [${n}, ${n}] needs ${need} bytes (${
      (need / 2 ** 20).toFixed(0)
    } MiB) in one storage binding, but this ` +
      `device allows ${maxBindingBytes} (maxStorageBufferBindingSize ${limit}; at most n = ${
        Math.floor(Math.sqrt(maxBindingBytes / 4))
      }). Fix: run on an adapter whose maxStorageBufferBindingSize is ≥ ${need} bytes (GPUs give ≥ 1 GiB; ` +
      `lavapipe 128 MiB), or, for AlphaEdit's null space, put that layer on such a device (--devices), or ` +
      `use MEMIT (no eigen-decomposition)`,
  );
}

function params(n: number, m: number, round: number, tol: number): Uint32Array {
  return words(n, m, round, 0, { f: tol }, 0, 0, 0);
}

/**
 * C = V Λ Vᵀ for a symmetric f32 C [n, n] (unchunked; C is not modified). Throws a GpuError when the
 * matrix does not fit one binding, and when it holds a non-finite value.
 */
export async function symmetricEigen(c: Tensor, opts: EigenOptions = {}): Promise<EigenResult> {
  const op = "symmetricEigen";
  const gpu = c.gpu;
  if (c.dtype !== "f32") throw new GpuError(op, `C must be f32, got ${c.dtype}`);
  if (c.shape.length !== 2 || c.shape[0] !== c.shape[1]) {
    throw new GpuError(op, `C must be square [n, n], got [${c.shape}]`);
  }
  const n = c.shape[0];
  checkEigenFits(gpu.maxBindingBytes, n, gpu.report.maxStorageBufferBindingSize);
  if (c.chunks.length > 1) throw new GpuError(op, `C [${n}, ${n}] is chunked; it must be one buffer`);
  const bad = await countNonFinite(c);
  if (bad) throw new GpuError(op, `C holds ${bad} non-finite values`);
  const tol = opts.tol ?? 4 * F32_EPS;
  const maxSweeps = opts.maxSweeps ?? 30;
  const m = n + (n % 2);
  const a = Tensor.empty(gpu, [n, n], "f32", { name: "eigen.A" });
  const v = Tensor.empty(gpu, [n, n], "f32", { name: "eigen.V" });
  const rot = gpu.createStorage(Math.max(16, (m / 2) * 16), "eigen.rot");
  const count = gpu.createStorage(16, "eigen.count");
  try {
    if (n === 0) return { values: new Float32Array(0), vectors: v, sweeps: 0, converged: true };
    const pipe = (entry: string) => gpu.pipeline({ family: "eigen", entry });
    const [rows, cols, ident, gather] = await Promise.all(
      ["rotate_rows", "rotate_cols", "identity", "gather_cols"].map(pipe),
    );
    gpu.copy(c.buffer, 0, a.buffer, 0, n * n * 4);
    gpu.dispatch(op, ident, [null, v.buffer], [Math.ceil(n / 64), n], params(n, m, 0, tol));
    let sweeps = 0, converged = n === 1;
    while (!converged && sweeps < maxSweeps) {
      gpu.write(count, 0, new Uint32Array(4));
      for (let r = 0; r < m - 1; r++) {
        const p = params(n, m, r, tol);
        gpu.dispatch(op, rows, [a.buffer, null, rot, count], [m / 2], p);
        gpu.dispatch(op, cols, [a.buffer, v.buffer, rot], [Math.ceil(m / 2 / 64), n], p);
      }
      sweeps++;
      const rotated = new Uint32Array(await gpu.read(count, 0, 4))[0];
      converged = rotated === 0;
    }
    const diag = await a.read();
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = diag[i * n + i];
    if (!values.every(Number.isFinite)) throw new GpuError(op, "C holds non-finite values");
    const order = [...values.keys()].sort((i, j) => values[i] - values[j]);
    const sorted = await selectColumns(v, Uint32Array.from(order), gather);
    v.dispose();
    return { values: Float32Array.from(order, (i) => values[i]), vectors: sorted, sweeps, converged };
  } catch (e) {
    v.dispose();
    throw e;
  } finally {
    a.dispose();
    gpu.release(rot), gpu.release(count);
  }
}

/** The columns `idx` of a [n, n] f32 matrix as a new [n, idx.length] tensor. */
export async function selectColumns(
  v: Tensor,
  idx: Uint32Array,
  pipeline?: GPUComputePipeline,
): Promise<Tensor> {
  const gpu = v.gpu, n = v.shape[0], k = idx.length;
  const out = Tensor.empty(gpu, [n, k], "f32", { name: "eigen.columns" });
  if (k === 0 || n === 0) return out;
  const pipe = pipeline ?? await gpu.pipeline({ family: "eigen", entry: "gather_cols" });
  const ib = gpu.createStorage(Math.max(16, k * 4), "eigen.idx");
  gpu.write(ib, 0, idx);
  gpu.dispatch("selectColumns", pipe, [null, v.buffer, null, null, ib, out.buffer], [
    Math.ceil(k / 64),
    n,
  ], params(n, k, 0, 0));
  await gpu.sync();
  gpu.release(ib);
  return out;
}
