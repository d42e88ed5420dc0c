/**
 * Softmax losses over `[T, V]` logits (V up to ~128k; f32 or f16 storage; row-chunked logits work):
 * log-softmax, per-token NLL and KL(P_cur ‖ P_init) with their logit gradients (the v* objective of
 * ROME), and argmax / top-k for evaluation and generation. All math is f32 with max-subtracted softmax;
 * row reductions run in one workgroup per row.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { type DType, dtypeBytes } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { chunkOf, grid1d, rowSegments, words } from "./_chunks.ts";

/** Options of {@link klDivergence}. */
export interface KlOptions {
  /** Scale of the gradient (e.g. kl_factor); the returned `kl` is not scaled. Default 1. */
  weight?: number;
  /** Add the gradient into this `[T, V]` f32 tensor (e.g. tokenNll's dLogits) and return it. */
  into?: Tensor;
}

/** Options of {@link tokenNll}. */
export interface TokenNllOptions {
  /** Per-row weights w_r of the loss `Σ_r w_r·nll_r` (default all 1). */
  weights?: Float32Array;
}

function checkLogits(op: string, logits: Tensor): [number, number] {
  if (logits.shape.length !== 2) throw new GpuError(op, `logits must be [T, V], got [${logits.shape}]`);
  return [logits.shape[0], logits.shape[1]];
}

function checkRows(op: string, rows: ArrayLike<number>, T: number): void {
  for (let i = 0; i < rows.length; i++) {
    if (!Number.isInteger(rows[i]) || rows[i] < 0 || rows[i] >= T) {
      throw new GpuError(op, `row ${rows[i]} is out of range [0, ${T})`);
    }
  }
}

/** Threads per row: 8 on CPU adapters (token NLL over 21 × 50,257 logits: 9 ms against 10 on lavapipe), else 256. */
function pipeline(gpu: Gpu, entry: string, logits: DType, init: DType = "f32") {
  const wg = gpu.isCpuAdapter ? 8 : 256;
  return gpu.pipeline({ family: "loss", entry, types: { TL: logits, TI: init }, constants: { WG: wg } });
}

/** Uploads 32-bit host words into a pooled storage buffer (release after recording the dispatch). */
function upload(gpu: Gpu, data: Uint32Array | Int32Array | Float32Array, op: string): GPUBuffer {
  const buf = gpu.createStorage(Math.max(4, data.byteLength), op);
  if (data.length) gpu.write(buf, 0, data);
  return buf;
}

/**
 * Dispatches a pair-driven entry (log_softmax, argmax): pairs (logits row, out row) grouped so that
 * each dispatch binds one chunk of the logits and one chunk of `out` (a row-chunked tensor, or a plain
 * buffer when `outRowsPerChunk` is Infinity).
 */
async function runPairs(
  op: string,
  entry: string,
  logits: Tensor,
  rows: ArrayLike<number>,
  outChunks: GPUBuffer[],
  outRowsPerChunk: number,
  outBinding: 3 | 8,
): Promise<void> {
  const gpu = logits.gpu;
  const V = logits.shape[1];
  const groups = new Map<string, { s: number; o: number; pairs: number[] }>();
  for (let i = 0; i < rows.length; i++) {
    const { chunk: s, local } = chunkOf(logits, rows[i]);
    const o = Number.isFinite(outRowsPerChunk) ? Math.floor(i / outRowsPerChunk) : 0;
    const key = `${s},${o}`;
    let g = groups.get(key);
    if (!g) groups.set(key, g = { s, o, pairs: [] });
    g.pairs.push(local, Number.isFinite(outRowsPerChunk) ? i - o * outRowsPerChunk : i);
  }
  const pipe = await pipeline(gpu, entry, logits.dtype);
  for (const g of groups.values()) {
    const n = g.pairs.length / 2;
    const buf = upload(gpu, Uint32Array.from(g.pairs), op);
    const bindings: (GPUBuffer | null)[] = [logits.chunks[g.s], buf];
    if (outBinding === 3) bindings.push(outChunks[g.o]);
    else bindings.push(null, null, null, null, null, outChunks[g.o]);
    gpu.dispatch(op, pipe, bindings, grid1d(n, 1), words(n, V, 0, 0, 0, 0, 0, 0));
    gpu.release(buf);
  }
}

function allRows(T: number): Uint32Array {
  return Uint32Array.from({ length: T }, (_, i) => i);
}

/** Log-softmax (f32, max-subtracted) of the listed rows (default all) as a new `[n, V]` f32 tensor. */
export async function logSoftmax(logits: Tensor, rows?: Uint32Array): Promise<Tensor> {
  const op = "logSoftmax";
  const [T, V] = checkLogits(op, logits);
  const sel = rows ?? allRows(T);
  checkRows(op, sel, T);
  const out = Tensor.empty(logits.gpu, [sel.length, V], "f32", { name: op });
  await runPairs(op, "log_softmax", logits, sel, out.chunks, out.rowsPerChunk, 3);
  return out;
}

/**
 * Per-row negative log-likelihood `nll_r = −log softmax(logits_r)[targets_r]` (targets −1 = ignored:
 * nll 0 and a zero gradient row) and `dLogits = d(Σ_r w_r·nll_r)/dlogits = w_r·(softmax_r − onehot)`,
 * a new `[T, V]` f32 tensor. The weights (default all 1; passed directly or as `{ weights }`) let the
 * caller express means, e.g. `1/(rows·len(target))`. The nll values (unweighted) are read back to the host.
 */
export async function tokenNll(
  logits: Tensor,
  targets: Int32Array,
  weightsOrOpts?: Float32Array | TokenNllOptions,
): Promise<{ nll: Float32Array; dLogits: Tensor }> {
  const res = await tokenNllOnGpu(logits, targets, weightsOrOpts);
  const nll = res.nll.size ? await res.nll.read() : new Float32Array(0);
  res.nll.dispose();
  return { nll, dLogits: res.dLogits };
}

/**
 * {@link tokenNll} with the per-row nll left on the GPU as an f32 `[T]` tensor (nothing is read back),
 * for loops that keep their losses on the device.
 */
export async function tokenNllOnGpu(
  logits: Tensor,
  targets: Int32Array,
  weightsOrOpts?: Float32Array | TokenNllOptions,
): Promise<{ nll: Tensor; dLogits: Tensor }> {
  const op = "tokenNll";
  const weights = weightsOrOpts instanceof Float32Array ? weightsOrOpts : weightsOrOpts?.weights;
  const [T, V] = checkLogits(op, logits);
  if (targets.length !== T) throw new GpuError(op, `targets has ${targets.length} entries for ${T} rows`);
  if (weights && weights.length !== T) {
    throw new GpuError(op, `weights has ${weights.length} entries for ${T} rows`);
  }
  for (let r = 0; r < T; r++) {
    if (targets[r] < -1 || targets[r] >= V) {
      throw new GpuError(op, `target ${targets[r]} of row ${r} is out of range [0, ${V}) (or −1 to ignore)`);
    }
  }
  const gpu = logits.gpu;
  const dLogits = Tensor.empty(gpu, [T, V], "f32", { name: `${op}.dLogits` });
  const pipe = await pipeline(gpu, "token_nll", logits.dtype);
  const tb = upload(gpu, targets, op);
  const wb = upload(gpu, weights ?? new Float32Array(T).fill(1), op);
  const nll = Tensor.empty(gpu, [T], "f32", { name: `${op}.nll` });
  const nb = nll.buffer;
  for (const s of rowSegments([logits, dLogits])) {
    gpu.dispatch(
      op,
      pipe,
      [logits.chunks[s.at[0].chunk], null, dLogits.chunks[s.at[1].chunk], tb, wb, nb],
      grid1d(s.rows, 1),
      words(s.rows, V, s.at[0].offset, s.at[1].offset, s.row),
    );
  }
  for (const b of [tb, wb]) gpu.release(b);
  return { nll, dLogits };
}

/**
 * `KL(P_cur ‖ P_init) = Σ_v exp(c_v)·(c_v − i_v)` with `c = log_softmax(logits[row])` and `i` the
 * `[V]` initial log-probs (torch's `F.kl_div(init, cur, log_target=True, reduction='batchmean')` for
 * one row). Returns the unscaled `kl` (read back) and `dLogits`, `weight · dKL/dlogits =
 * weight·p·(c − i − KL)` on that row: a new zero `[T, V]` f32 tensor, or `into` with it added.
 */
export async function klDivergence(
  logits: Tensor,
  row: number,
  initLogProbs: Tensor,
  opts: KlOptions = {},
): Promise<{ kl: number; dLogits: Tensor }> {
  const res = await klDivergenceOnGpu(logits, row, initLogProbs, opts);
  const kl = (await res.kl.read())[0];
  res.kl.dispose();
  return { kl, dLogits: res.dLogits };
}

/** {@link klDivergence} with the unscaled kl left on the GPU as an f32 `[1]` tensor. */
export async function klDivergenceOnGpu(
  logits: Tensor,
  row: number,
  initLogProbs: Tensor,
  opts: KlOptions = {},
): Promise<{ kl: Tensor; dLogits: Tensor }> {
  const op = "klDivergence";
  const [T, V] = checkLogits(op, logits);
  checkRows(op, [row], T);
  if (initLogProbs.size !== V) {
    throw new GpuError(op, `initLogProbs must have ${V} values, got [${initLogProbs.shape}]`);
  }
  const gpu = logits.gpu;
  const into = opts.into;
  if (into) {
    if (into.shape.length !== 2 || into.shape[0] !== T || into.shape[1] !== V || into.dtype !== "f32") {
      throw new GpuError(op, `into must be an f32 [${T}, ${V}] tensor, got ${into.dtype} [${into.shape}]`);
    }
    if (into.gpu !== gpu) throw new GpuError(op, "into lives on another device");
  }
  if (initLogProbs.gpu !== gpu) throw new GpuError(op, "initLogProbs lives on another device");
  const dLogits = into ?? Tensor.zeros(gpu, [T, V], "f32", { name: `${op}.dLogits` });
  const pipe = await pipeline(gpu, "kl_div", logits.dtype, initLogProbs.dtype);
  const l = chunkOf(logits, row), o = chunkOf(dLogits, row);
  const kl = Tensor.empty(gpu, [1], "f32", { name: `${op}.kl` });
  const kb = kl.buffer;
  gpu.dispatch(
    op,
    pipe,
    [logits.chunks[l.chunk], null, dLogits.chunks[o.chunk], null, null, kb, initLogProbs.buffer],
    [1],
    words(
      1,
      V,
      l.offset,
      o.offset,
      0,
      into ? 1 : 0,
      { f: opts.weight ?? 1 },
    ),
  );
  return { kl, dLogits };
}

/** The argmax of each listed row (default all; the first index among equal maxima), read to the host. */
export async function argmaxRows(logits: Tensor, rows?: Uint32Array): Promise<Uint32Array> {
  const op = "argmaxRows";
  const [T] = checkLogits(op, logits);
  const sel = rows ?? allRows(T);
  checkRows(op, sel, T);
  if (!sel.length) return new Uint32Array(0);
  const gpu = logits.gpu;
  const out = gpu.createStorage(sel.length * 4, op);
  await runPairs(op, "argmax", logits, sel, [out], Infinity, 8);
  const ids = new Uint32Array(await gpu.read(out, 0, sel.length * 4));
  gpu.release(out);
  return ids;
}

/** Reads one row of a (possibly chunked, f16) `[T, V]` tensor to the host as f32. */
async function readRow(t: Tensor, row: number): Promise<Float32Array> {
  const V = t.rowSize, eb = dtypeBytes(t.dtype);
  const { chunk: c, offset } = chunkOf(t, row);
  const byteOff = offset * eb;
  const start = byteOff - (byteOff % 4); // copies need 4-byte aligned offsets
  const bytes = await t.gpu.read(t.chunks[c], start, byteOff - start + V * eb);
  return t.dtype === "f16"
    ? Float32Array.from(new Float16Array(bytes, byteOff - start, V))
    : new Float32Array(bytes, 0, V);
}

/** The k largest logits of one row, descending (ties: smaller id first), read on the host. */
export async function topK(
  logits: Tensor,
  row: number,
  k: number,
): Promise<{ ids: Uint32Array; values: Float32Array }> {
  const op = "topK";
  const [T, V] = checkLogits(op, logits);
  checkRows(op, [row], T);
  if (!Number.isInteger(k) || k < 0) throw new GpuError(op, `k must be a non-negative integer, got ${k}`);
  const vals = await readRow(logits, row);
  const n = Math.min(k, V);
  // keep a sorted buffer of the best n (k is small: evaluation and sampling use 5–10)
  const ids: number[] = [];
  const better = (a: number, b: number) => vals[a] > vals[b] || (vals[a] === vals[b] && a < b);
  for (let v = 0; v < V && n > 0; v++) {
    if (Number.isNaN(vals[v])) continue;
    if (ids.length === n && !better(v, ids[n - 1])) continue;
    let at = ids.length === n ? n - 1 : ids.length;
    while (at > 0 && better(v, ids[at - 1])) at--;
    ids.splice(at, 0, v);
    if (ids.length > n) ids.pop();
  }
  return { ids: Uint32Array.from(ids), values: Float32Array.from(ids, (i) => vals[i]) };
}
