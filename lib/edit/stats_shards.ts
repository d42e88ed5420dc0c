/**
 * Covariance statistics split across processes or machines: each shard accumulates the second-moment sum
 * Σ k kᵀ and the key count over one contiguous slice of the corpus's sequences ({@link collectStatsShard});
 * the sums are additive, so {@link mergeStatsShards} adds them and writes C = Σ / count into the very
 * cache file a single run of the same statistics writes (same key, same metadata), where `collectStats`
 * and every edit then find it.
 *
 * Slices are whole batches of the single run (batch b of ⌈N / batch⌉ goes to shard ⌊b·n / nb⌋), so every
 * key is computed in the same batch as in one run; only the order of the f32 sums differs (the merge adds
 * the shards' sums in f64).
 * @module
 */
import { openSafetensors, writeSafetensors } from "../model/safetensors.ts";
import type { LoadedModel } from "../model/load.ts";
import { cacheDir } from "../util/fs.ts";
import {
  accumulateKeys,
  readCorpus,
  statsCachePath,
  statsKey,
  statsMetadata,
  type StatsOptions,
} from "./covariance.ts";

/** One shard of a run: index i of n. */
export interface ShardSpec {
  /** 0-based shard index. */
  index: number;
  /** Number of shards. */
  count: number;
}

/** What a shard run wrote. */
export interface StatsShardResult {
  /** The shard file (`mom2_sum` f32 [d, d] plus metadata). */
  path: string;
  /** Keys accumulated. */
  count: number;
  /** The slice of sequences [start, end). */
  range: [number, number];
  /** The statistics key the merged C will be cached under. */
  key: string;
}

/** What a merge wrote. */
export interface StatsMergeResult {
  /** The cache file of C. */
  path: string;
  /** Total keys. */
  count: number;
  /** The statistics key. */
  key: string;
  /** The layer. */
  layer: number;
}

const SHARD_KIND = "keg-stats-shard";

/** Checks a shard spec against its count; the error names `what` (e.g. "--shard"). */
export function checkShard(shard: ShardSpec, what = "shard"): void {
  if (!Number.isInteger(shard.count) || shard.count < 1) {
    throw new RangeError(`${what}: the shard count must be a whole number ≥ 1, got ${shard.count}`);
  }
  if (!Number.isInteger(shard.index) || shard.index < 0 || shard.index >= shard.count) {
    throw new RangeError(
      `${what}: shard index ${shard.index} is out of range for ${shard.count} shards (need 0 ≤ i < ${shard.count})`,
    );
  }
}

/**
 * The slice [start, end) of `total` sequences that shard `i/n` accumulates: whole batches of `batch`
 * sequences, as evenly as possible. Throws when the shard would be empty (more shards than batches).
 */
export function shardRange(total: number, batch: number, shard: ShardSpec): [number, number] {
  checkShard(shard);
  const nb = Math.ceil(total / batch);
  const b0 = Math.floor((shard.index * nb) / shard.count),
    b1 = Math.floor(((shard.index + 1) * nb) / shard.count);
  if (b1 <= b0) {
    throw new RangeError(
      `shard ${shard.index}/${shard.count} would be empty: ${total} sequences make ${nb} batches of ${batch}; ` +
        `use at most ${nb} shards`,
    );
  }
  return [b0 * batch, Math.min(total, b1 * batch)];
}

/** The file name of a shard inside a shard folder. */
export function shardFileName(layer: number, key: string, shard: ShardSpec): string {
  return `layer${layer}-${key}.shard-${shard.index}-of-${shard.count}.safetensors`;
}

/**
 * Accumulates one shard of the statistics `o` describes and writes its sums to `outDir` (default: the
 * cache's `stats/shards` folder) as {@link shardFileName}. Resumable like `collectStats` (a partial state
 * beside the shard file). Returns what was written; a shard file already there for the same key is reused.
 */
export async function collectStatsShard(
  model: LoadedModel,
  o: StatsOptions,
  shard: ShardSpec,
  outDir?: string,
): Promise<StatsShardResult> {
  checkShard(shard);
  const net = model.net;
  const maxLength = Math.min(o.maxLength ?? net.config.maxPositions, net.config.maxPositions);
  const key = await statsKey(model, o, maxLength);
  const seqs = await readCorpus(o.corpus, o.nSamples);
  const batch = o.batchSize ?? 32;
  const range = shardRange(seqs.length, batch, shard);
  const dir = outDir ?? `${await cacheDir("stats")}/shards`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${shardFileName(o.layer, key, shard)}`;
  if (!o.force && (await exists(path))) {
    const have = await readShard(path);
    if (have.meta.key === key) return { path, count: have.count, range, key };
  }
  const partial = path.replace(/\.safetensors$/, ".partial.safetensors");
  const { sum, count } = await accumulateKeys(
    model,
    { ...o, batchSize: batch },
    seqs,
    range,
    partial,
    key,
    maxLength,
  );
  try {
    const data = await sum.read();
    const d = net.config.intermediateSize;
    await writeSafetensors(path, [{ name: "mom2_sum", dtype: "F32", shape: [d, d], data }], {
      ...statsMetadata(model, o, maxLength, count),
      kind: SHARD_KIND,
      key,
      precision: net.precision,
      shard_index: String(shard.index),
      shard_count: String(shard.count),
      start: String(range[0]),
      end: String(range[1]),
      total: String(seqs.length),
      batch_size: String(batch),
    });
  } finally {
    sum.dispose();
  }
  await Deno.remove(partial).catch(() => {});
  return { path, count, range, key };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

interface ShardFile {
  path: string;
  meta: Record<string, string>;
  shard: ShardSpec;
  count: number;
  range: [number, number];
  total: number;
  d: number;
}

const REQUIRED = [
  "kind",
  "key",
  "layer",
  "count",
  "shard_index",
  "shard_count",
  "start",
  "end",
  "total",
  "model",
  "corpus",
  "n_samples",
  "max_length",
  "precision",
] as const;

async function readShard(path: string, withData = false): Promise<ShardFile & { sum?: Float32Array }> {
  const f = await openSafetensors(path);
  try {
    const meta = f.metadata ?? {};
    if (meta.kind !== SHARD_KIND) {
      throw new Error(`${path}: not a keg statistics shard (metadata kind is ${JSON.stringify(meta.kind)})`);
    }
    for (const k of REQUIRED) {
      if (typeof meta[k] !== "string") throw new Error(`${path}: shard metadata lacks field "${k}"`);
    }
    const int = (k: string) => {
      const v = Number(meta[k]);
      if (!Number.isInteger(v) || v < 0) {
        throw new Error(`${path}: shard metadata field "${k}" is ${meta[k]}`);
      }
      return v;
    };
    if (!f.has("mom2_sum")) throw new Error(`${path}: no tensor "mom2_sum"`);
    const out: ShardFile & { sum?: Float32Array } = {
      path,
      meta,
      shard: { index: int("shard_index"), count: int("shard_count") },
      count: int("count"),
      range: [int("start"), int("end")],
      total: int("total"),
      d: 0,
    };
    checkShard(out.shard, `${path}: shard_index/shard_count`);
    if (withData) {
      const t = await f.readFloat("mom2_sum", "f32");
      if (t.shape.length !== 2 || t.shape[0] !== t.shape[1]) {
        throw new Error(`${path}: mom2_sum has shape [${t.shape}], expected a square matrix`);
      }
      out.d = t.shape[0];
      out.sum = t.data;
    }
    return out;
  } finally {
    await f.close();
  }
}

/** Fields that name what makes two statistics runs differ (the key hashes them with the corpus contents). */
const KEYED = ["model", "layer", "n_samples", "max_length", "precision"] as const;

/**
 * Adds the sums of every shard of one statistics run (all n files, each once, the same key) and writes
 * C = Σ / count atomically into the cache file a single run writes (`dir`, default the cache's `stats`).
 * Every check happens before anything is written: a missing or duplicated shard, shards of different
 * runs (model, layer, corpus, samples, length, precision), slices that do not tile the corpus.
 */
export async function mergeStatsShards(files: readonly string[], dir?: string): Promise<StatsMergeResult> {
  if (!files.length) throw new Error("stats merge: no shard files given");
  const shards: ShardFile[] = [];
  for (const p of files) shards.push(await readShard(p));
  const first = shards[0];
  for (const s of shards.slice(1)) {
    if (s.meta.key !== first.meta.key) {
      const diff = KEYED.filter((k) => s.meta[k] !== first.meta[k])
        .map((k) => `${k} ${JSON.stringify(s.meta[k])} vs ${JSON.stringify(first.meta[k])}`);
      throw new Error(
        `stats merge: ${s.path} belongs to another statistics run than ${first.path} (${
          diff.length ? diff.join(", ") : "the corpus contents differ"
        })`,
      );
    }
    if (s.shard.count !== first.shard.count || s.total !== first.total) {
      throw new Error(
        `stats merge: ${s.path} is shard ${s.shard.index}/${s.shard.count} of ${s.total} sequences, ` +
          `${first.path} is shard ${first.shard.index}/${first.shard.count} of ${first.total}`,
      );
    }
  }
  const n = first.shard.count;
  const byIndex = new Map<number, ShardFile>();
  for (const s of shards) {
    const dup = byIndex.get(s.shard.index);
    if (dup) {
      throw new Error(`stats merge: shard ${s.shard.index}/${n} given twice (${dup.path} and ${s.path})`);
    }
    byIndex.set(s.shard.index, s);
  }
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) {
    throw new Error(
      `stats merge: missing shard(s) ${missing.map((i) => `${i}/${n}`).join(", ")} of ${first.meta.key}` +
        ` (run \`keg stats --shard i/${n}\` for them first)`,
    );
  }
  let at = 0;
  for (let i = 0; i < n; i++) {
    const s = byIndex.get(i)!;
    if (s.range[0] !== at) {
      throw new Error(
        `stats merge: ${s.path} covers sequences ${s.range[0]}–${s.range[1]}, expected from ${at}`,
      );
    }
    at = s.range[1];
  }
  if (at !== first.total) throw new Error(`stats merge: the shards cover ${at} of ${first.total} sequences`);

  let sum: Float64Array | null = null, count = 0, d = 0;
  for (let i = 0; i < n; i++) {
    const s = await readShard(byIndex.get(i)!.path, true);
    if (!sum) d = s.d, sum = new Float64Array(d * d);
    else if (s.d !== d) throw new Error(`stats merge: ${s.path} has d = ${s.d}, shard 0 has ${d}`);
    const x = s.sum!;
    for (let j = 0; j < x.length; j++) sum[j] += x[j];
    count += s.count;
  }
  if (count === 0) throw new Error(`stats merge: the shards hold no keys`);
  const c = new Float32Array(d * d);
  for (let j = 0; j < c.length; j++) c[j] = sum![j] / count;
  const layer = Number(first.meta.layer);
  const out = dir ?? await cacheDir("stats");
  await Deno.mkdir(out, { recursive: true });
  const path = statsCachePath(out, layer, first.meta.key);
  await writeSafetensors(path, [{ name: "mom2", dtype: "F32", shape: [d, d], data: c }], {
    count: String(count),
    layer: first.meta.layer,
    model: first.meta.model,
    corpus: first.meta.corpus,
    n_samples: first.meta.n_samples,
    max_length: first.meta.max_length,
  });
  return { path, count, key: first.meta.key, layer };
}
