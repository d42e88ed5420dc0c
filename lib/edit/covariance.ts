/**
 * Covariance statistics C = E[k kᵀ] of a layer's keys (the rewrite module's input) over every token of a
 * text corpus, accumulated in f32 on the GPU. Cached on disk under a key made of the model's content
 * fingerprint, layer, corpus contents, sample count, sequence length and precision (a folder name alone
 * can collide). Long runs save a partial state every few seconds (write-then-rename) and resume from it.
 * @module
 */
import { profileStage } from "../gpu/profile.ts";
import { Tensor } from "../gpu/tensor.ts";
import { covarianceAccumulate } from "../ops/covariance.ts";
import { gatherRows } from "../ops/embedding.ts";
import { scale } from "../ops/elementwise.ts";
import { openSafetensors, writeSafetensors } from "../model/safetensors.ts";
import type { LoadedModel } from "../model/load.ts";
import { padBatch, type TokenBatch } from "../model/transformer.ts";
import { cacheDir, sha256Hex, writeFileAtomic } from "../util/fs.ts";
import { encodeNpz, readNpz } from "../model/npz.ts";

/** Options for {@link collectStats}. */
export interface StatsOptions {
  layer: number;
  /** Text files; each non-empty cleaned line (see {@link cleanWikitextLine}) is one sequence. */
  corpus: string[];
  /** Sequences to use at most (EasyEdit's mom2_n_samples). */
  nSamples: number;
  /** Tokens per sequence at most (default: the model's max positions). */
  maxLength?: number;
  /** Sequences per GPU batch (default 32). */
  batchSize?: number;
  /** Cache folder (default ~/.cache/keg/stats). */
  dir?: string;
  /** Ignore the cache and recompute. */
  force?: boolean;
  /** Called after each batch: sequences done, total, tokens done. */
  onProgress?: (done: number, total: number, tokens: number) => void;
  /** Stops the run after the current batch, saving the partial state. */
  signal?: AbortSignal;
  /** Seconds between partial saves (default 10). */
  saveEvery?: number;
  /**
   * @internal Bench-only (bench/stats_bench.ts's baseline, not a CLI option): run the path as it was when
   * issue 9 was filed — each batch as one right-padded block, the hooked layer's whole block (down-projection
   * included) and the keys gathered from the padded rows — instead of length groups and key-only forwards.
   * The result is the same within f32 summation order.
   */
  paddedFullForward?: boolean;
}

/**
 * Fixed cost of one more sub-batch of a statistics batch, in padded token positions (its dispatches and
 * host work): {@link lengthGroups} splits a batch only where that saves more positions than this.
 */
export const LENGTH_GROUP_OVERHEAD = 96;

/**
 * @internal Splits a batch of sequences, given by their token counts, into sub-batches of similar length
 * so that little padding is computed: sequences sorted by length (ties by index) are cut into contiguous
 * groups minimising Σ (group size · its longest length + `overhead`) (dynamic programming). Returns the
 * groups as indices into `lengths`, each in ascending length, shortest group first; every index appears
 * exactly once.
 */
export function lengthGroups(lengths: readonly number[], overhead = LENGTH_GROUP_OVERHEAD): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const n = order.length;
  // best[j]: least cost of the first j sorted sequences; cut[j]: where the last group of that optimum starts
  const best = new Array<number>(n + 1).fill(Infinity);
  const cut = new Array<number>(n + 1).fill(0);
  best[0] = 0;
  for (let j = 1; j <= n; j++) {
    const len = lengths[order[j - 1]];
    for (let i = 0; i < j; i++) {
      const cost = best[i] + overhead + (j - i) * len;
      if (cost < best[j]) best[j] = cost, cut[j] = i;
    }
  }
  const groups: number[][] = [];
  for (let j = n; j > 0; j = cut[j]) groups.unshift(order.slice(cut[j], j));
  return groups;
}

/**
 * Records one statistics batch the default way and returns its key count: sub-batches of similar length
 * ({@link lengthGroups}), each forwarded only up to the layer's key; the real rows of every sub-batch's key
 * are copied into one matrix so that C += KᵀK runs once per batch (a small Gram is slower per row). When that
 * matrix is row-chunked or an f16 row is not 4-byte aligned, each sub-batch gathers its rows and runs its
 * own update instead. Its tensors go into `held`, for the caller to release once the GPU has run them.
 */
async function groupedBatch(
  model: LoadedModel,
  layer: number,
  c: Tensor,
  chunk: number[][],
  held: Tensor[],
): Promise<number> {
  const net = model.net;
  const gpu = c.gpu;
  const d = net.config.intermediateSize;
  const total = chunk.reduce((a, s) => a + s.length, 0);
  const all = Tensor.empty(gpu, [total, d], net.act, { name: "stats.keys" });
  const rowBytes = d * (net.act === "f16" ? 2 : 4);
  const packed = all.chunks.length === 1 && rowBytes % 4 === 0;
  if (packed) held.push(all);
  else all.dispose();
  let at = 0;
  for (const g of lengthGroups(chunk.map((s) => s.length))) {
    const b = padBatch(g.map((i) => chunk[i]));
    const uniform = b.lengths.every((n) => n === b.seq);
    const { x, keys } = await net.prefix(b, layer, {
      layer,
      readRows: packed || uniform ? undefined : realRows(b),
      keysOnly: true,
    });
    x.dispose();
    held.push(keys!);
    if (packed) {
      // each sequence's real rows are contiguous in the padded key (one copy when nothing is padded); a
      // row-chunked key first gathers them into a tensor no larger than `all`, hence in one chunk too
      let src = keys!, runs = uniform ? [[0, b.batch * b.seq]] : b.lengths.map((n, r) => [r * b.seq, n]);
      if (src.chunks.length > 1) {
        src = await gatherRows(src, realRows(b), { outDtype: net.act });
        held.push(src);
        runs = [[0, src.rows]];
      }
      for (const [from, n] of runs) {
        gpu.copy(src.chunks[0], from * rowBytes, all.chunks[0], at * rowBytes, n * rowBytes);
        at += n;
      }
      gpu.flush(); // the GPU starts on this sub-batch while the host records the next
      continue;
    }
    await covarianceAccumulate(c, keys!);
    gpu.flush();
  }
  if (packed) await covarianceAccumulate(c, all);
  return total;
}

/** Flat rows `r·seq + p` of the real (unpadded) tokens of a batch. */
function realRows(b: TokenBatch): Uint32Array {
  const rows = new Uint32Array(b.lengths.reduce((a, n) => a + n, 0));
  let k = 0;
  b.lengths.forEach((n, r) => {
    for (let p = 0; p < n; p++) rows[k++] = r * b.seq + p;
  });
  return rows;
}

/** Covariance statistics of one layer. */
export interface Stats {
  /** C = E[k kᵀ] (divided by count), f32 [d, d] on the layer's device. */
  c: Tensor;
  /** Number of key vectors. */
  count: number;
  /** Where they came from. */
  source: "cache" | "computed" | "file";
  /** The cache or source file. */
  path: string;
}

/**
 * ROME's WikiText clean-up: undo the ` @-@ `-style tokenisation, drop `<unk>`, and keep lines longer
 * than 40 characters that are not headings. Returns null for dropped lines.
 */
export function cleanWikitextLine(line: string): string | null {
  let s = line.trim();
  const pairs: [string, string][] = [
    [" @-@ ", "-"],
    [" @,@ ", ","],
    [" @.@ ", "."],
    [" , ", ", "],
    [" . ", ". "],
    [" 's", "'s"],
    [" ( ", " ("],
    [" ) ", ") "],
    [" ; ", "; "],
    [" : ", ": "],
    ['" ', '"'],
  ];
  for (const [a, b] of pairs) s = s.split(a).join(b);
  s = s.split("<unk>").join("").trim();
  if (s.length <= 40 || s.startsWith("=")) return null;
  return s;
}

/** Reads the cleaned sequences of a corpus (at most `limit`). */
export async function readCorpus(files: string[], limit: number): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(f);
    } catch (e) {
      throw new Error(`stats corpus ${f}: ${(e as Error).message}`);
    }
    for (const line of text.split("\n")) {
      const s = cleanWikitextLine(line);
      if (s) out.push(s);
      if (out.length >= limit) return out;
    }
  }
  if (!out.length) {
    throw new Error(`stats corpus ${files.join(", ")}: no usable lines (need > 40 characters)`);
  }
  return out;
}

/** @internal The cache key of a statistics run (shared with stats_shards.ts). */
export async function statsKey(model: LoadedModel, o: StatsOptions, maxLength: number): Promise<string> {
  const corpusHashes: string[] = [];
  for (const f of o.corpus) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(f);
    } catch (e) {
      throw new Error(`stats corpus ${f}: ${(e as Error).message}`);
    }
    corpusHashes.push(await sha256Hex(bytes));
  }
  return (await sha256Hex(JSON.stringify({
    model: model.fingerprint,
    layer: o.layer,
    corpus: corpusHashes,
    n: o.nSamples,
    maxLength,
    precision: model.net.precision,
    v: 1,
  }))).slice(0, 40);
}

/**
 * Loads statistics onto a device: keg's or the oracle's safetensors (`mom2` f32 [d,d] + `count`), or the
 * reference ROME code's `.npz` (`mom2.mom2`, `mom2.count`).
 */
export async function loadStatsFile(model: LoadedModel, layer: number, path: string): Promise<Stats> {
  const d = model.config.intermediateSize;
  const n = model.config.numLayers;
  if (!Number.isInteger(layer) || layer < 0 || layer >= n) {
    throw new Error(`${path}: statistics for layer ${layer}, but the model's layers are 0..${n - 1}`);
  }
  if (path.endsWith(".npz")) {
    const z = await readNpz(path);
    const m = z.get("mom2.mom2"), n = z.get("mom2.count");
    if (!m || !n) {
      throw new Error(`${path}: an npz of statistics needs mom2.mom2 and mom2.count (has ${[...z.keys()]})`);
    }
    if (m.shape.length !== 2 || m.shape[0] !== d || m.shape[1] !== d) {
      throw new Error(`${path}: mom2.mom2 has shape [${m.shape}], layer ${layer}'s keys need [${d}, ${d}]`);
    }
    checkMom2(path, "mom2.mom2", m.data, d);
    const c = Tensor.from(model.net.deviceOf(layer), Float32Array.from(m.data), [d, d], "f32", {
      name: "mom2",
    });
    return { c, count: n.data[0], source: "file", path };
  }
  const f = await openSafetensors(path);
  try {
    if (!f.has("mom2")) throw new Error(`${path}: no tensor "mom2"`);
    const m = await f.readFloat("mom2", "f32");
    if (m.shape.length !== 2 || m.shape[0] !== d || m.shape[1] !== d) {
      throw new Error(`${path}: mom2 has shape [${m.shape}], layer ${layer}'s keys need [${d}, ${d}]`);
    }
    let count = Number(f.metadata?.count ?? NaN);
    if (f.has("count")) {
      const raw = await f.read("count");
      count = raw.dtype === "I64"
        ? Number(new BigInt64Array(raw.bytes.buffer)[0])
        : new Float32Array(raw.bytes.buffer)[0];
    }
    checkMom2(path, "mom2", m.data, d);
    const c = Tensor.from(model.net.deviceOf(layer), m.data, [d, d], "f32", { name: "mom2" });
    return { c, count, source: "file", path };
  } finally {
    await f.close();
  }
}

/** A second moment must be finite with a non-negative, not all-zero diagonal; errors name the file. */
function checkMom2(path: string, name: string, data: ArrayLike<number>, d: number): void {
  let bad = 0, zero = true, negative = -1;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) bad++;
  if (bad) throw new Error(`${path}: ${name} holds ${bad} NaN/infinite value(s); the statistics are corrupt`);
  for (let i = 0; i < d; i++) {
    const v = data[i * d + i];
    if (v !== 0) zero = false;
    if (v < 0 && negative < 0) negative = i;
  }
  if (zero) throw new Error(`${path}: ${name} has an all-zero diagonal; these are not key statistics`);
  if (negative >= 0) {
    throw new Error(`${path}: ${name}[${negative}, ${negative}] is negative; a second moment has E[k²] ≥ 0`);
  }
}

async function savePartial(path: string, c: Tensor, count: number, next: number, key: string): Promise<void> {
  const data = await c.read();
  await writeSafetensors(path, [{ name: "mom2_sum", dtype: "F32", shape: [...c.shape], data }], {
    count: String(count),
    next: String(next),
    key,
  });
}

/**
 * Returns C for a layer: from the cache when present, else by running the model over the corpus (resuming
 * a partial run when one exists).
 */
export async function collectStats(model: LoadedModel, o: StatsOptions): Promise<Stats> {
  profileStage("stats");
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${model.dir}: statistics need a tokenizer`);
  const net = model.net;
  if (!Number.isInteger(o.layer) || o.layer < 0 || o.layer >= net.config.numLayers) {
    throw new Error(
      `statistics: layer ${o.layer} is outside the model's layers 0..${net.config.numLayers - 1}`,
    );
  }
  const maxLength = Math.min(o.maxLength ?? net.config.maxPositions, net.config.maxPositions);
  const key = await statsKey(model, o, maxLength);
  const dir = o.dir ?? await cacheDir("stats");
  await Deno.mkdir(dir, { recursive: true });
  const final = statsCachePath(dir, o.layer, key);
  const partial = `${dir}/layer${o.layer}-${key}.partial.safetensors`;
  if (!o.force) {
    try {
      await Deno.stat(final);
      return { ...(await loadStatsFile(model, o.layer, final)), source: "cache" };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const seqs = await readCorpus(o.corpus, o.nSamples);
  const { sum: c, count } = await accumulateKeys(model, o, seqs, [0, seqs.length], partial, key, maxLength);
  await scale(c, 1 / count);
  const data = await c.read();
  const d = net.config.intermediateSize;
  await writeSafetensors(
    final,
    [{ name: "mom2", dtype: "F32", shape: [d, d], data }],
    statsMetadata(model, o, maxLength, count),
  );
  await Deno.remove(partial).catch(() => {});
  return { c, count, source: "computed", path: final };
}

/** @internal The cache file of a layer's C for a statistics key. */
export function statsCachePath(dir: string, layer: number, key: string): string {
  return `${dir}/layer${layer}-${key}.safetensors`;
}

/** @internal The metadata of a cached C (and, with shard fields added, of a shard's sums). */
export function statsMetadata(
  model: LoadedModel,
  o: StatsOptions,
  maxLength: number,
  count: number,
): Record<string, string> {
  return {
    count: String(count),
    layer: String(o.layer),
    model: model.fingerprint,
    corpus: o.corpus.join(","),
    n_samples: String(o.nSamples),
    max_length: String(maxLength),
  };
}

/**
 * @internal Accumulates Σ k kᵀ (not divided) over the keys of `seqs[range[0]..range[1])` in batches of
 * `o.batchSize` counted from `range[0]`, saving a partial state at `partial` every few seconds and on
 * abort (and resuming from it when its key matches). Returns the sum on the layer's device and the count.
 */
export async function accumulateKeys(
  model: LoadedModel,
  o: StatsOptions,
  seqs: readonly string[],
  range: [number, number],
  partial: string,
  key: string,
  maxLength: number,
): Promise<{ sum: Tensor; count: number }> {
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${model.dir}: statistics need a tokenizer`);
  const net = model.net;
  const d = net.config.intermediateSize;
  const gpu = net.deviceOf(o.layer);
  const [start, end] = range;
  let c: Tensor, count = 0, next = start;
  try {
    const f = await openSafetensors(partial);
    try {
      if (f.metadata?.key !== key) throw new Error("stale partial state");
      c = Tensor.from(gpu, (await f.readFloat("mom2_sum", "f32")).data, [d, d], "f32", { name: "mom2" });
      count = Number(f.metadata.count), next = Number(f.metadata.next);
    } finally {
      await f.close();
    }
  } catch {
    c = Tensor.zeros(gpu, [d, d], "f32", { name: "mom2" });
  }
  const bs = o.batchSize ?? 32;
  let lastSave = performance.now();
  const encode = (from: number) =>
    seqs.slice(from, Math.min(end, from + bs)).map((s) => tok.encode(s).slice(0, maxLength)).filter((s) =>
      s.length
    );
  let ahead: number[][] | undefined;
  while (next < end) {
    const chunk = ahead ?? encode(next);
    ahead = undefined;
    if (chunk.length && o.paddedFullForward) {
      const b = padBatch(chunk);
      const rows = realRows(b);
      const { x, keys } = await net.prefix(b, o.layer, { layer: o.layer, readRows: rows });
      x.dispose();
      await covarianceAccumulate(c, keys!);
      await gpu.sync();
      keys!.dispose();
      count += rows.length;
    } else if (chunk.length) {
      const held: Tensor[] = [];
      try {
        count += await groupedBatch(model, o.layer, c, chunk, held);
        // tokenize the next batch while the GPU works on this one
        if (next + bs < end && !o.signal?.aborted) ahead = encode(next + bs);
        await gpu.sync();
      } finally {
        for (const t of held) t.dispose();
      }
    }
    next = Math.min(end, next + bs);
    o.onProgress?.(next - start, end - start, count);
    const due = performance.now() - lastSave > (o.saveEvery ?? 10) * 1000;
    if (o.signal?.aborted || (due && next < end)) {
      await savePartial(partial, c, count, next, key);
      lastSave = performance.now();
      if (o.signal?.aborted) {
        c.dispose();
        throw new DOMException(
          `statistics interrupted at ${next - start}/${end - start} sequences; rerun to resume`,
          "AbortError",
        );
      }
    }
  }
  return { sum: c, count };
}

/** Writes statistics as the reference ROME code's `.npz` (`mom2.mom2` f32, `mom2.count` i64). */
export async function exportStatsNpz(stats: Stats, path: string): Promise<void> {
  const data = await stats.c.read();
  await writeFileAtomic(
    path,
    encodeNpz({
      "mom2.mom2": { dtype: "<f4", shape: [...stats.c.shape], data },
      "mom2.count": { dtype: "<i8", shape: [], data: BigInt64Array.of(BigInt(stats.count)) },
    }),
  );
}
