/**
 * Suffix rows of a batch: when a change enters the residual stream of row b at position `cut[b]` (ROME's
 * δ at the lookup token), causal attention leaves every position before `cut[b]` untouched. Their keys and
 * values above the changed layer are computed once ({@link prefillAbove}) and kept in a KV cache; each
 * optimisation step then runs and differentiates only the positions `cut[b]…` of every row, attending to
 * the cached prefix. The results equal the whole batch's up to rounding (tests/model/suffix_test.ts).
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import { cast } from "../ops/elementwise.ts";
import { type ModelKvCache, moveTo, type TokenBatch, type Transformer } from "./transformer.ts";

/** The suffix of a right-padded batch: positions `cut[b]` … `lengths[b] − 1` of each row. */
export interface SuffixBatch {
  /** The whole batch. */
  full: TokenBatch;
  /** First suffix position of each row. */
  cut: number[];
  /** The suffix tokens as a batch of their own (seq = the longest suffix, right-padded). */
  batch: TokenBatch;
  /**
   * For each suffix row `b·seq' + j`, the whole batch's row it stands for (`b·seq + cut[b] + j`; padding
   * rows point at the row's last real token, so a gather reads valid data).
   */
  sourceRows: Uint32Array;
  /** KV-cache capacity per row that holds the whole rows and every suffix appended after its cut. */
  cacheLength: number;
}

/** Splits `full` at `cut` (one position per row, 0 ≤ cut[b] < lengths[b]). */
export function suffixBatch(full: TokenBatch, cut: readonly number[]): SuffixBatch {
  if (cut.length !== full.batch) throw new Error(`suffixBatch: ${cut.length} cuts for ${full.batch} rows`);
  cut.forEach((c, b) => {
    if (!Number.isInteger(c) || c < 0 || c >= full.lengths[b]) {
      throw new Error(`suffixBatch: row ${b} cut ${c} outside [0, ${full.lengths[b]})`);
    }
  });
  const lengths = full.lengths.map((n, b) => n - cut[b]);
  const seq = Math.max(...lengths);
  const ids = new Uint32Array(full.batch * seq);
  const sourceRows = new Uint32Array(full.batch * seq);
  for (let b = 0; b < full.batch; b++) {
    for (let j = 0; j < seq; j++) {
      const p = Math.min(cut[b] + j, full.lengths[b] - 1);
      sourceRows[b * seq + j] = b * full.seq + p;
      if (j < lengths[b]) ids[b * seq + j] = full.ids[b * full.seq + p];
    }
  }
  const cacheLength = Math.max(full.seq, ...cut.map((c) => c + seq));
  return { full, cut: [...cut], batch: { batch: full.batch, seq, lengths, ids }, sourceRows, cacheLength };
}

/** The suffix row of the whole batch's flat row `row` (which must lie at or after its row's cut). */
export function suffixRow(s: SuffixBatch, row: number): number {
  const b = Math.floor(row / s.full.seq), p = row % s.full.seq;
  if (b >= s.full.batch || p < s.cut[b] || p >= s.full.lengths[b]) {
    throw new Error(`suffixRow: row ${row} (batch row ${b}, position ${p}) is not in the suffix`);
  }
  return b * s.batch.seq + p - s.cut[b];
}

/**
 * Runs blocks `from`… on `x` (the whole batch's residual entering block `from`; not consumed) into a KV
 * cache, then leaves `cut[b]` tokens of row b in it: the keys and values of the unchanged prefix. Blocks
 * with a tape and this cache ({@link Transformer.block}) then run the suffix after the prefix.
 */
export async function prefillAbove(
  net: Transformer,
  x: Tensor,
  from: number,
  s: SuffixBatch,
): Promise<ModelKvCache> {
  const cache = net.createKvCache(s.full.batch, s.cacheLength);
  let h = await cast(x, x.dtype);
  try {
    for (let i = from; i < net.blocks.length; i++) {
      h = await moveTo(h, net.deviceOf(i));
      await net.block(i, h, s.full, undefined, undefined, cache);
    }
  } catch (e) {
    cache.dispose();
    throw e;
  } finally {
    h.dispose();
  }
  cache.advance(s.cut);
  return cache;
}
