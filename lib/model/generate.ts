/**
 * Greedy (argmax) generation, with a KV cache by default: the prompt is run once (prefill) into per-layer
 * caches on each layer's device, then each step feeds only the last token (one query row per prompt,
 * attention over the cache, rotary / learned positions at the token's true position). `kvCache: false`
 * recomputes the whole sequence every step instead (the reference the cached path is tested against).
 *
 * Batches of prompts of different lengths are right-padded for the prefill; a row that has finished (its
 * EOS, its token budget or the model's position limit) keeps being fed a dummy token whose result is neither
 * kept in the cache nor read, until every row has finished.
 * @module
 */
import { argmaxRows } from "../ops/loss.ts";
import { padBatch, type TokenBatch, type Transformer } from "./transformer.ts";
import { checkTokenCount } from "./validate.ts";

/** Options for {@link greedyGenerate} and {@link greedyGenerateBatch}. */
export interface GenerateOptions {
  /** Tokens to add (at most). */
  maxNewTokens: number;
  /** Stop a row when this id is produced (it is included). */
  eosId?: number | null;
  /**
   * Longest sequence the model may read (`n_positions` / `max_position_embeddings`): a token is produced
   * only from a sequence of at most this many tokens. Default: the learned position table's size (GPT-2),
   * else unlimited.
   */
  maxPositions?: number;
  /** Decode with a KV cache (default true); false recomputes the full sequence each step. */
  kvCache?: boolean;
}

/** How many tokens each prompt may get, after checking the prompts. */
function budgets(net: Transformer, prompts: number[][], opts: GenerateOptions): number[] {
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) {
    throw new Error(`generate: maxNewTokens must be a non-negative integer, got ${opts.maxNewTokens}`);
  }
  if (prompts.length === 0) throw new Error("generate: no prompts");
  const maxPos = opts.maxPositions ?? net.positions?.shape[0] ?? Infinity;
  return prompts.map((p, r) => {
    if (p.length === 0) throw new Error(`generate: prompt ${r} is empty`);
    checkTokenCount(maxPos, p.length, `generate: prompt ${r}`);
    // A sequence of length L ≤ maxPos produces token L+1: tokens L = P … maxPos give maxPos − P + 1 of them.
    return Math.min(opts.maxNewTokens, maxPos - p.length + 1);
  });
}

/** Greedy continuation of one prompt. Returns the new ids (EOS included when produced). */
export async function greedyGenerate(
  net: Transformer,
  prompt: number[],
  opts: GenerateOptions,
): Promise<number[]> {
  const [out] = await greedyGenerateBatch(net, [prompt], opts);
  return out;
}

/**
 * Greedy continuation of several prompts (of any lengths) at once. Row r of the result equals
 * `greedyGenerate(net, prompts[r], opts)` up to floating-point differences between batch shapes.
 */
export async function greedyGenerateBatch(
  net: Transformer,
  prompts: number[][],
  opts: GenerateOptions,
): Promise<number[][]> {
  const budget = budgets(net, prompts, opts);
  const outs: number[][] = prompts.map(() => []);
  if (budget.every((n) => n === 0)) return outs;
  const eos = opts.eosId ?? null;
  const done = budget.map((n) => n === 0);
  /** Records row r's next token and whether it finishes the row. */
  const take = (r: number, id: number) => {
    outs[r].push(id);
    if (outs[r].length >= budget[r] || id === eos) done[r] = true;
  };
  if (opts.kvCache === false) {
    await recompute(net, prompts, outs, done, take);
    return outs;
  }

  // Capacity: row r stores its prompt and all but its last new token, plus one slot for the dummy token
  // it is fed after finishing.
  const maxLen = Math.max(...prompts.map((p, r) => p.length + budget[r]));
  const cache = net.createKvCache(prompts.length, maxLen);
  try {
    const prefill = padBatch(prompts);
    const logits = await net.forwardCached(prefill, cache, { logitRows: "last" });
    const first = await argmaxRows(logits);
    logits.dispose();
    first.forEach((id, r) => !done[r] && take(r, id));
    const B = prompts.length;
    const step: TokenBatch = {
      batch: B,
      seq: 1,
      lengths: new Array<number>(B).fill(1),
      ids: new Uint32Array(B),
    };
    while (done.some((d) => !d)) {
      const live: number[] = [];
      for (let r = 0; r < B; r++) {
        step.ids[r] = done[r] ? 0 : outs[r][outs[r].length - 1];
        if (!done[r]) live.push(r);
      }
      const lg = await net.forwardCached(step, cache, {
        logitRows: "all",
        keep: done.map((d) => (d ? 0 : 1)),
      });
      const next = await argmaxRows(lg, Uint32Array.from(live));
      lg.dispose();
      live.forEach((r, i) => take(r, next[i]));
    }
  } finally {
    cache.dispose();
  }
  return outs;
}

/** Full recomputation each step (right-padded batch of the unfinished rows). */
async function recompute(
  net: Transformer,
  prompts: number[][],
  outs: number[][],
  done: boolean[],
  take: (r: number, id: number) => void,
): Promise<void> {
  while (done.some((d) => !d)) {
    const live = prompts.map((_, r) => r).filter((r) => !done[r]);
    const r0 = await net.forward(padBatch(live.map((r) => [...prompts[r], ...outs[r]])), {
      logitRows: "last",
    });
    const next = await argmaxRows(r0.logits);
    r0.logits.dispose();
    live.forEach((r, i) => take(r, next[i]));
  }
}

/** Draws a token from the `k` largest logits of a row (softmax over them; ties: lower id first). */
export function sampleTopK(row: Float32Array, k: number, r: () => number): number {
  // the k largest logits (ties: the lower id first), then a softmax draw among them
  const best: number[] = [];
  for (let v = 0; v < row.length; v++) {
    if (best.length < k) {
      best.push(v);
      best.sort((a, b) => row[b] - row[a] || a - b);
    } else if (row[v] > row[best[k - 1]]) {
      best[k - 1] = v;
      best.sort((a, b) => row[b] - row[a] || a - b);
    }
  }
  const m = row[best[0]];
  const w = best.map((i) => Math.exp(row[i] - m));
  let u = r() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < best.length; j++) {
    u -= w[j];
    if (u <= 0) return best[j];
  }
  return best[best.length - 1];
}
