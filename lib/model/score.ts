/**
 * Teacher-forced scoring of targets after prompts: per-token log-probabilities, argmax agreement and the
 * next-token top-k, for many (prompt, target) pairs in one batch. Used by the edit report and evaluation.
 * @module
 */
import { logSoftmax } from "../ops/loss.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { padBatch, type Transformer } from "./transformer.ts";

/** Scores of one (prompt, target) pair. */
export interface TargetScore {
  /** Log-probability of each target token given the prompt and the earlier target tokens. */
  tokenLogProbs: number[];
  /** Mean of tokenLogProbs (ROME's length-normalised score, negated NLL). */
  meanLogProb: number;
  /** Argmax prediction at each target position (teacher forced). */
  argmax: number[];
  /** The target ids scored. */
  targetIds: number[];
}

/**
 * Scores `targets[i]` (token ids) after `prompts[i]` (text), tokenized as `prompt` then the target ids
 * appended (so the ids of the target are exactly those given).
 */
export async function scoreTargets(
  net: Transformer,
  tok: Tokenizer,
  prompts: string[],
  targets: number[][],
): Promise<TargetScore[]> {
  const seqs = prompts.map((p, i) => [...tok.encode(p), ...targets[i]]);
  const b = padBatch(seqs);
  // rows predicting each target token: the position before it
  const rows: number[] = [];
  const owner: [number, number][] = [];
  seqs.forEach((s, i) => {
    const start = s.length - targets[i].length;
    targets[i].forEach((_, j) => {
      rows.push(i * b.seq + start + j - 1);
      owner.push([i, j]);
    });
  });
  const rowIds = Uint32Array.from(rows);
  const r = await net.forward(b, { logitRows: rowIds });
  const lp = await logSoftmax(r.logits);
  r.logits.dispose();
  const all = await lp.read();
  lp.dispose();
  const V = net.config.vocabSize;
  const out: TargetScore[] = targets.map((t) => ({
    tokenLogProbs: [],
    meanLogProb: 0,
    argmax: [],
    targetIds: t,
  }));
  owner.forEach(([i, j], k) => {
    const row = all.subarray(k * V, (k + 1) * V);
    out[i].tokenLogProbs.push(row[targets[i][j]]);
    let best = 0;
    for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
    out[i].argmax.push(best);
  });
  for (const s of out) {
    s.meanLogProb = s.tokenLogProbs.reduce((a, b) => a + b, 0) / Math.max(1, s.tokenLogProbs.length);
  }
  return out;
}

/** Top-k next tokens after each prompt: ids, probabilities and decoded text. */
export async function topNext(
  net: Transformer,
  tok: Tokenizer,
  prompts: string[],
  k = 5,
): Promise<{ id: number; prob: number; text: string }[][]> {
  const b = padBatch(prompts.map((p) => tok.encode(p)));
  const r = await net.forward(b, { logitRows: "last" });
  const lp = await logSoftmax(r.logits);
  r.logits.dispose();
  const all = await lp.read();
  lp.dispose();
  const V = net.config.vocabSize;
  return prompts.map((_, i) => {
    const row = all.subarray(i * V, (i + 1) * V);
    const ids = Array.from(row.keys()).sort((a, c) => row[c] - row[a]).slice(0, k);
    return ids.map((id) => ({ id, prob: Math.exp(row[id]), text: tok.decode([id]) }));
  });
}
