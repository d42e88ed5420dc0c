/**
 * MEMIT's reads of the model for a batch of requests: the keys K of one layer (down-projection input at
 * the lookup token, averaged over the context templates group by group, as compute_ks does) and the
 * residual stream after a block at the bare prompts' lookup tokens (cur_z). Prompts are run in chunks
 * of at most `maxRows` sequences, so batches of any size fit.
 * @module
 */
import { gatherRows } from "../ops/embedding.ts";
import { padBatch, type Transformer } from "../model/transformer.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { locate, type LocatedPrompt, type LookupToken } from "./lookup.ts";

/** A request as MEMIT reads it: a prompt with `{}` and the subject. */
export interface PromptSubject {
  prompt: string;
  subject: string;
}

/** Keys of one layer for a batch. */
export interface BatchKeys {
  /** K [B, d_ff] row-major: per request, the mean over groups of the mean over each group's templates. */
  K: Float32Array;
  /** The key of every (request, template) [B·T, d_ff], request-major. */
  kTemplates: Float32Array;
  /** The filled prompts (B·T, request-major), with ids and lookup positions. */
  prompts: LocatedPrompt[];
}

/** Default number of sequences per forward. */
export const KEY_CHUNK = 64;

/** Runs `prompts` up to block `layer` in chunks; returns the rows read at the lookup tokens. */
async function readAt(
  net: Transformer,
  prompts: LocatedPrompt[],
  layer: number,
  what: "keys" | "residual",
  maxRows: number,
): Promise<Float32Array> {
  const d = what === "keys" ? net.config.intermediateSize : net.config.hiddenSize;
  const out = new Float32Array(prompts.length * d);
  for (let s = 0; s < prompts.length; s += maxRows) {
    const part = prompts.slice(s, s + maxRows);
    const b = padBatch(part.map((p) => p.ids));
    const rows = Uint32Array.from(part.map((p, i) => i * b.seq + p.lookup));
    if (what === "keys") {
      const { x, keys, values } = await net.prefix(b, layer, { layer, readRows: rows });
      x.dispose(), values?.dispose();
      out.set(await keys!.read(), s * d);
      keys!.dispose();
    } else {
      const { x } = await net.prefix(b, layer);
      const h = await gatherRows(x, rows, { outDtype: "f32" });
      x.dispose();
      out.set(await h.read(), s * d);
      h.dispose();
    }
  }
  return out;
}

/**
 * K of `layer` for the batch. `groups` are the context templates in groups (`[["{}"], [5 prefixes]]`);
 * each template is formatted with the request's prompt, then with the subject.
 */
export async function batchKeys(
  net: Transformer,
  tok: Tokenizer,
  requests: readonly PromptSubject[],
  groups: readonly (readonly string[])[],
  layer: number,
  factToken: LookupToken,
  maxRows = KEY_CHUNK,
): Promise<BatchKeys> {
  const flat = groups.flat();
  const prompts = requests.flatMap((r) =>
    flat.map((t) => locate(tok, t.replace("{}", () => r.prompt), r.subject, factToken))
  );
  const d = net.config.intermediateSize, T = flat.length;
  const kTemplates = await readAt(net, prompts, layer, "keys", maxRows);
  const K = new Float32Array(requests.length * d);
  const acc = new Float64Array(d);
  for (let b = 0; b < requests.length; b++) {
    acc.fill(0);
    let t0 = 0;
    for (const g of groups) {
      for (let t = t0; t < t0 + g.length; t++) {
        const off = (b * T + t) * d;
        for (let j = 0; j < d; j++) acc[j] += kTemplates[off + j] / (g.length * groups.length);
      }
      t0 += g.length;
    }
    for (let j = 0; j < d; j++) K[b * d + j] = acc[j];
  }
  return { K, kTemplates, prompts };
}

/** The bare prompts (template "{}") of a batch with their lookup positions. */
export function barePrompts(
  tok: Tokenizer,
  requests: readonly PromptSubject[],
  factToken: LookupToken,
): LocatedPrompt[] {
  return requests.map((r) => locate(tok, r.prompt, r.subject, factToken));
}

/** cur_z [B, d_model]: the residual stream after block `layer` at each bare prompt's lookup token. */
export function residualAt(
  net: Transformer,
  prompts: LocatedPrompt[],
  layer: number,
  maxRows = KEY_CHUNK,
): Promise<Float32Array> {
  return readAt(net, prompts, layer, "residual", maxRows);
}
