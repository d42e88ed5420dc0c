/**
 * Plain-TS float64 references for the attention and rotary kernels (tests only): causal attention with GQA,
 * right padding, query offsets and a sliding window; its analytic backward; rotary embeddings in both
 * conventions. Written from the formulas (see ../shared/models/fixtures/README.md), independently of the
 * GPU code.
 * @module
 */

/** Geometry of an attention call (the same fields as lib/ops/attention's options). */
export interface AttentionRefOptions {
  batch: number;
  seqQ: number;
  seqKv: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Valid keys per batch row (default seqKv). */
  kvLengths?: number[];
  /** Absolute position of query 0 per batch row (default seqKv − seqQ). */
  queryOffset?: number[];
  /** Sliding window (key j visible to position p iff p − window < j ≤ p); null/undefined: none. */
  window?: number | null;
  /** Score scale (default 1/√headDim). */
  scale?: number;
}

/** Gradients of the attention output w.r.t. its inputs. */
export interface AttentionGrads {
  /** [batch·seqQ, heads·headDim]. */
  dq: Float64Array;
  /** [batch·seqKv, kvHeads·headDim], summed over the query heads of each kv head. */
  dk: Float64Array;
  /** [batch·seqKv, kvHeads·headDim]. */
  dv: Float64Array;
}

/** Whether key `j` is visible to query `i` of batch row `b`. */
export function attentionVisible(o: AttentionRefOptions, b: number, i: number, j: number): boolean {
  const len = o.kvLengths?.[b] ?? o.seqKv;
  const p = (o.queryOffset?.[b] ?? o.seqKv - o.seqQ) + i;
  const w = o.window ?? 0;
  return j < len && j <= p && (!w || j > p - w);
}

/** Whether query `i` of row `b` stands at a real (unpadded) token: its position is below the kv length. */
export function attentionQueryValid(o: AttentionRefOptions, b: number, i: number): boolean {
  const len = o.kvLengths?.[b] ?? o.seqKv;
  return (o.queryOffset?.[b] ?? o.seqKv - o.seqQ) + i < len;
}

/** Probabilities [seqKv] of query i of head h in batch row b (all zero when it sees no key). */
export function attentionProbs(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  o: AttentionRefOptions,
  b: number,
  h: number,
  i: number,
): Float64Array {
  return probs(q, k, o, b, h, i).p;
}

function probs(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  o: AttentionRefOptions,
  b: number,
  h: number,
  i: number,
) {
  const { seqQ, seqKv, heads, kvHeads, headDim: hd } = o;
  const scale = o.scale ?? 1 / Math.sqrt(hd);
  const g = h / (heads / kvHeads) | 0;
  const qo = (b * seqQ + i) * heads * hd + h * hd;
  const s = new Float64Array(seqKv).fill(-Infinity);
  let m = -Infinity;
  for (let j = 0; j < seqKv; j++) {
    if (!attentionVisible(o, b, i, j)) continue;
    const ko = (b * seqKv + j) * kvHeads * hd + g * hd;
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += q[qo + d] * k[ko + d];
    s[j] = dot * scale;
    m = Math.max(m, s[j]);
  }
  let sum = 0;
  for (let j = 0; j < seqKv; j++) {
    s[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - m);
    sum += s[j];
  }
  if (sum > 0) { for (let j = 0; j < seqKv; j++) s[j] /= sum; }
  return { p: s, g, qo };
}

/** softmax(scale·q·kᵀ + mask)·v in f64; out [batch·seqQ, heads·headDim]. Queries that see no key get 0. */
export function attentionReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  o: AttentionRefOptions,
): Float64Array {
  const { batch, seqQ, seqKv, heads, kvHeads, headDim: hd } = o;
  const out = new Float64Array(batch * seqQ * heads * hd);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seqQ; i++) {
        const { p, g, qo } = probs(q, k, o, b, h, i);
        for (let j = 0; j < seqKv; j++) {
          if (p[j] === 0) continue;
          const vo = (b * seqKv + j) * kvHeads * hd + g * hd;
          for (let d = 0; d < hd; d++) out[qo + d] += p[j] * v[vo + d];
        }
      }
    }
  }
  return out;
}

/**
 * Analytic backward of {@link attentionReference} for an output gradient dOut: with P the probabilities,
 * dP = dOut·vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dq = scale·dS·k, dk = scale·dSᵀ·q, dv = Pᵀ·dOut (dk, dv summed
 * over the query heads sharing a kv head).
 */
export function attentionBackwardReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dOut: ArrayLike<number>,
  o: AttentionRefOptions,
): AttentionGrads {
  const { batch, seqQ, seqKv, heads, kvHeads, headDim: hd } = o;
  const scale = o.scale ?? 1 / Math.sqrt(hd);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dp = new Float64Array(seqKv);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seqQ; i++) {
        const { p, g, qo } = probs(q, k, o, b, h, i);
        let dsum = 0;
        for (let j = 0; j < seqKv; j++) {
          dp[j] = 0;
          if (p[j] === 0) continue;
          const vo = (b * seqKv + j) * kvHeads * hd + g * hd;
          for (let d = 0; d < hd; d++) dp[j] += dOut[qo + d] * v[vo + d];
          dsum += p[j] * dp[j];
        }
        for (let j = 0; j < seqKv; j++) {
          if (p[j] === 0) continue;
          const ko = (b * seqKv + j) * kvHeads * hd + g * hd;
          const ds = p[j] * (dp[j] - dsum) * scale;
          for (let d = 0; d < hd; d++) {
            dq[qo + d] += ds * k[ko + d];
            dk[ko + d] += ds * q[qo + d];
            dv[ko + d] += p[j] * dOut[qo + d];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** Options of {@link rotaryReference} (those of lib/ops/rotary's applyRotary, plus the angle arithmetic). */
export interface RotaryRefOptions {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  rotaryDim: number;
  theta: number;
  interleaved: boolean;
  positionOffset?: number | number[];
  inverse?: boolean;
  /** "f32": angles rounded to f32 step by step as HuggingFace computes them (default); "f64": exact. */
  angles?: "f32" | "f64";
  /** Inverse frequencies to use instead of `1/theta^(2i/rotaryDim)` (e.g. rope-scaled ones). */
  invFreq?: ArrayLike<number>;
}

/**
 * Llama 3 rope scaling in f64, pair by pair as Meta's `apply_scaling` writes it: keep a frequency whose
 * wavelength 2π/f is below `old/high`, divide by `factor` above `old/low`, and in between blend
 * `(1 − s)·f/factor + s·f` with `s = (old/wavelength − low)/(high − low)`.
 */
export function llama3ScaledInvFreqRef(
  invFreq: ArrayLike<number>,
  factor: number,
  low: number,
  high: number,
  old: number,
): Float64Array {
  const out = new Float64Array(invFreq.length);
  for (let i = 0; i < invFreq.length; i++) {
    const f = invFreq[i];
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < old / high) out[i] = f;
    else if (wavelen > old / low) out[i] = f / factor;
    else {
      const s = (old / wavelen - low) / (high - low);
      out[i] = (1 - s) * (f / factor) + s * f;
    }
  }
  return out;
}

/** Rotary embedding in f64 (cos/sin in f64 of the angle), returning a new array. */
export function rotaryReference(x: ArrayLike<number>, o: RotaryRefOptions): Float64Array {
  const { batch, seq, heads, headDim: hd, rotaryDim: rd } = o;
  const half = rd / 2;
  const r32 = (o.angles ?? "f32") === "f32" ? Math.fround : (a: number) => a;
  const inv: number[] = [];
  for (let i = 0; i < half; i++) {
    inv.push(o.invFreq ? o.invFreq[i] : r32(1 / r32(o.theta ** r32((2 * i) / rd))));
  }
  const out = Float64Array.from(x);
  const sign = o.inverse ? -1 : 1;
  for (let b = 0; b < batch; b++) {
    const off = typeof o.positionOffset === "number" ? o.positionOffset : o.positionOffset?.[b] ?? 0;
    for (let s = 0; s < seq; s++) {
      const pos = off + s;
      for (let h = 0; h < heads; h++) {
        const base = ((b * seq + s) * heads + h) * hd;
        for (let i = 0; i < half; i++) {
          const a = r32(pos * inv[i]);
          const c = Math.cos(a), sn = sign * Math.sin(a);
          const i0 = o.interleaved ? 2 * i : i, i1 = o.interleaved ? 2 * i + 1 : i + half;
          const x0 = x[base + i0], x1 = x[base + i1];
          out[base + i0] = x0 * c - x1 * sn;
          out[base + i1] = x1 * c + x0 * sn;
        }
      }
    }
  }
  return out;
}
