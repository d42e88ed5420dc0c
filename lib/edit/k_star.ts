/**
 * k* and the values around it: the rewrite module's input (key) and output (value) at the lookup token,
 * for the bare prompt and averaged over the context templates.
 * @module
 */
import { padBatch, type Transformer } from "../model/transformer.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { locate, type LocatedPrompt, type LookupToken } from "./lookup.ts";

/** Keys and values of one request. */
export interface KeyValues {
  /** k* = mean over templates of the key at the lookup token [d_ff]. */
  kStar: Float32Array;
  /** v̄ = mean over templates of the value (down-projection output) [d_model]. */
  vBar: Float32Array;
  /** Key and value of the bare prompt (template "{}"). */
  kPrompt: Float32Array;
  vPrompt: Float32Array;
  /** The filled templates with ids and lookup positions. */
  prompts: LocatedPrompt[];
}

/** Mean of rows [n, d] of a flat array. */
function meanRows(x: Float32Array, n: number, d: number): Float32Array {
  const out = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) out[j] += x[r * d + j];
  return Float32Array.from(out, (v) => v / n);
}

/**
 * Computes k*, v̄ and the bare-prompt key/value at `layer`. `prompt` contains "{}" for the subject;
 * `templates[0]` must be "{}".
 */
export async function computeKeyValues(
  net: Transformer,
  tok: Tokenizer,
  prompt: string,
  subject: string,
  templates: string[],
  layer: number,
  factToken: LookupToken,
): Promise<KeyValues> {
  const prompts = templates.map((t) => locate(tok, t.replace("{}", () => prompt), subject, factToken));
  const b = padBatch(prompts.map((p) => p.ids));
  const rows = Uint32Array.from(prompts.map((p, i) => i * b.seq + p.lookup));
  const { x, keys, values } = await net.prefix(b, layer, { layer, readRows: rows });
  x.dispose();
  const k = await keys!.read(), v = await values!.read();
  keys!.dispose(), values!.dispose();
  const dk = net.config.intermediateSize, dv = net.config.hiddenSize;
  return {
    kStar: meanRows(k, prompts.length, dk),
    vBar: meanRows(v, prompts.length, dv),
    kPrompt: k.slice(0, dk),
    vPrompt: v.slice(0, dv),
    prompts,
  };
}
