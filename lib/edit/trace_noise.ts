/**
 * The noise of ROME's causal tracing: numpy's legacy `RandomState(seed).randn(…)` reproduced bit for bit
 * (MT19937 and the polar Gaussian method), scaled by `noise_factor × std` of the subjects' token
 * embeddings (ROME's `collect_embedding_std`, noise rule "s3").
 * @module
 */
import type { Transformer } from "../model/transformer.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { embedding } from "../ops/embedding.ts";

/** MT19937, seeded as numpy's `RandomState(int)` seeds it (`init_genrand`). */
export class Mt19937 {
  #mt = new Uint32Array(624);
  #i = 624;
  #gauss = 0;
  #hasGauss = false;

  /** A generator in the state of `numpy.random.RandomState(seed)`; seed in [0, 2³²). */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`Mt19937: seed must be an integer in [0, 2^32), got ${seed}`);
    }
    const mt = this.#mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next 32-bit output. */
  nextU32(): number {
    const mt = this.#mt;
    if (this.#i >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ ((y & 1) ? 0x9908b0df : 0);
      }
      this.#i = 0;
    }
    let y = mt[this.#i++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A uniform double in [0, 1) with 53 random bits (numpy's `random_double`). */
  nextDouble(): number {
    const a = this.nextU32() >>> 5, b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** A standard normal draw (numpy's `legacy_gauss`: the polar method, second value cached). */
  gauss(): number {
    if (this.#hasGauss) {
      this.#hasGauss = false;
      return this.#gauss;
    }
    let x1: number, x2: number, r2: number;
    do {
      x1 = 2 * this.nextDouble() - 1;
      x2 = 2 * this.nextDouble() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt(-2 * Math.log(r2) / r2);
    this.#gauss = f * x1;
    this.#hasGauss = true;
    return f * x2;
  }
}

/**
 * `scale × numpy.random.RandomState(seed).randn(n)` rounded once to f32 (ROME's tracing noise for
 * `n = samples · subject tokens · d_model`, row-major).
 */
export function seededNoise(seed: number, n: number, scale: number): Float32Array {
  const g = new Mt19937(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * g.gauss();
  return out;
}

/** Options of {@link embeddingStd}. */
export interface EmbeddingStdOptions {
  /** Prepend BOS to each subject (default false, as the oracle in ../shared does). */
  addBos?: boolean;
}

/** What {@link embeddingStd} measured. */
export interface EmbeddingStd {
  /** Unbiased standard deviation over every element of the token-embedding rows. */
  std: number;
  /** Subjects encoded. */
  subjects: number;
  /** Token rows pooled. */
  tokens: number;
}

/**
 * ROME's `collect_embedding_std`: `torch.std` (unbiased, over all elements) of the token embeddings of
 * every subject, each encoded alone. Accumulated in f64.
 */
export async function embeddingStd(
  net: Transformer,
  tokenizer: Tokenizer,
  subjects: readonly string[],
  opts: EmbeddingStdOptions = {},
): Promise<EmbeddingStd> {
  if (subjects.length === 0) throw new Error("embeddingStd: no subjects");
  const ids: number[] = [];
  for (const s of subjects) ids.push(...tokenizer.encode(s, { addBos: opts.addBos ?? false }));
  if (ids.length === 0) throw new Error("embeddingStd: the subjects encode to no tokens");
  let sum = 0, sumSq = 0, n = 0;
  const chunk = 4096;
  for (let s = 0; s < ids.length; s += chunk) {
    const part = Uint32Array.from(ids.slice(s, s + chunk));
    const t = await embedding(net.embed, part, { outDtype: "f32" });
    const v = await t.read();
    t.dispose();
    for (let i = 0; i < v.length; i++) sum += v[i];
    n += v.length;
  }
  const mean = sum / n;
  for (let s = 0; s < ids.length; s += chunk) {
    const part = Uint32Array.from(ids.slice(s, s + chunk));
    const t = await embedding(net.embed, part, { outDtype: "f32" });
    const v = await t.read();
    t.dispose();
    for (let i = 0; i < v.length; i++) sumSq += (v[i] - mean) ** 2;
  }
  return { std: Math.sqrt(sumSq / (n - 1)), subjects: subjects.length, tokens: ids.length };
}
