/**
 * Context templates: short texts sampled from the unedited model that prefix the edit prompt, so the
 * key and value are averaged over contexts ("{}" itself is the first template). Sampled once per model
 * with a fixed seed (top-k, seed words The/Therefore/Because/I/You, as the reference code) and cached.
 * @module
 */
import { padBatch, type Transformer } from "../model/transformer.ts";
import { sampleTopK } from "../model/generate.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { rng } from "../util/random.ts";
import { cacheDir, sha256Hex, writeFileAtomic } from "../util/fs.ts";
import { CONTEXT_TEMPLATE_SEEDS } from "./request.ts";

/** Options for {@link contextTemplates}. */
export interface TemplateOptions {
  /** [[length in tokens, count], …], e.g. [[5, 10], [10, 10]] → 21 templates with "{}". */
  lengthParams: [number, number][];
  /** Top-k of the sampler (reference: 5). */
  topK?: number;
  seed?: number;
  /** Model fingerprint for the cache key; no caching when absent. */
  fingerprint?: string;
  /** Folder of the cached template files (default `$KEG_CACHE/templates`). */
  cacheDir?: string;
}

/** Samples (or loads from cache) the context templates of a model. */
export async function contextTemplates(
  net: Transformer,
  tok: Tokenizer,
  opts: TemplateOptions,
): Promise<string[]> {
  const topK = opts.topK ?? 5, seed = opts.seed ?? 0;
  let cachePath: string | null = null;
  if (opts.fingerprint) {
    const key = await sha256Hex(
      JSON.stringify([opts.fingerprint, opts.lengthParams, topK, seed, net.precision]),
    );
    const dir = opts.cacheDir ?? await cacheDir("templates");
    if (opts.cacheDir) await Deno.mkdir(dir, { recursive: true });
    cachePath = `${dir}/${key.slice(0, 32)}.json`;
    try {
      return JSON.parse(await Deno.readTextFile(cachePath));
    } catch { /* not cached */ }
  }
  const r = rng(seed);
  const out = ["{}"];
  for (const [length, count] of opts.lengthParams) {
    const perSeed = Math.max(1, Math.floor(count / CONTEXT_TEMPLATE_SEEDS.length));
    const seqs: number[][] = [];
    for (const w of CONTEXT_TEMPLATE_SEEDS) for (let n = 0; n < perSeed; n++) seqs.push(tok.encode(w));
    while (seqs.some((s) => s.length < length)) {
      const b = padBatch(seqs);
      const res = await net.forward(b, { logitRows: "last" });
      const logits = await res.logits.read();
      res.logits.dispose();
      const V = net.config.vocabSize;
      seqs.forEach((s, i) => {
        if (s.length < length) s.push(sampleTopK(logits.subarray(i * V, (i + 1) * V), topK, r));
      });
    }
    for (const s of seqs) {
      const text = tok.decode(s.slice(tok.addsBos ? 1 : 0)).normalize("NFKD").replace(/[{}]/g, " ");
      out.push(`${text}. {}`);
    }
  }
  // best effort: a cache that cannot be written (a read-only home, the folder removed meanwhile by another
  // process) only costs sampling again next time
  if (cachePath) await writeFileAtomic(cachePath, JSON.stringify(out)).catch(() => {});
  return out;
}
