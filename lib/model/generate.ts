/**
 * Greedy generation.
 * @module
 */
import { argmaxRows } from "../ops/loss.ts";
import { padBatch, type Transformer } from "./transformer.ts";

/** Options for {@link greedyGenerate}. */
export interface GenerateOptions {
  /** Tokens to add. */
  maxNewTokens: number;
  /** Stop when this id is produced (it is included). */
  eosId?: number | null;
  /** Position limit of the model (learned positions); generation stops there. */
  maxPositions?: number;
}

/** Greedy (argmax) continuation of one prompt by full recomputation each step. Returns the new ids. */
export async function greedyGenerate(net: Transformer, prompt: number[], opts: GenerateOptions): Promise<number[]> {
  const seq = [...prompt];
  const out: number[] = [];
  for (let step = 0; step < opts.maxNewTokens; step++) {
    if (opts.maxPositions && seq.length >= opts.maxPositions) break;
    const b = padBatch([seq]);
    const r = await net.forward(b, { logitRows: "last" });
    const [next] = await argmaxRows(r.logits);
    r.logits.dispose();
    out.push(next);
    seq.push(next);
    if (opts.eosId != null && next === opts.eosId) break;
  }
  return out;
}
