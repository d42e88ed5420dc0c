/**
 * The batched forwards of causal tracing. A base run keeps the residual stream entering every block for
 * the clean row and the corrupted rows; a restore set whose first restored layer is s then starts at block
 * s from those rows (every block reads only its input residual, so this is the same arithmetic as a full
 * forward), and many restore sets share one batch: row 0 clean, rows `1 + g·samples + j` corrupted with
 * noise row j and set g applied. A restore copies row 0's value at the same token inside the same forward.
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import { moveTo, padBatch, type Transformer } from "../model/transformer.ts";
import { cast } from "../ops/elementwise.ts";
import { embedding, gatherRows, scatterAddRows, scatterRows } from "../ops/embedding.ts";
import { argmaxRows, tokenNll } from "../ops/loss.ts";
import type { RestoreSite, TraceFact } from "./trace_prompt.ts";

/** The clean and corrupted run of one fact, with the residual entering each block kept. */
export interface TraceBase {
  fact: TraceFact;
  samples: number;
  /** Clean probability of the answer at the last position. */
  high: number;
  /** Clean argmax at the last position. */
  cleanArgmax: number;
  /** The corrupted probability of each noised row (nothing restored). */
  lowPerSample: Float32Array;
  /** `inputs[l]`: `[(1 + samples)·T, d]` residual entering block l (row 0 clean), on layer l's device. */
  inputs: Tensor[];
  /** Releases the kept residuals. */
  dispose(): void;
}

async function restoreRows(x: Tensor, src: number[], dst: number[]): Promise<void> {
  if (dst.length === 0) return;
  const clean = await gatherRows(x, Uint32Array.from(src), { outDtype: x.dtype });
  try {
    await scatterRows(x, clean, Uint32Array.from(dst));
  } finally {
    clean.dispose();
  }
}

/** Final norm, LM head, and the answer's probability at the last position of every row. */
async function answerProbs(
  net: Transformer,
  x: Tensor,
  rows: number,
  T: number,
  answerId: number,
): Promise<{ probs: Float32Array; cleanArgmax: number }> {
  const last = Uint32Array.from({ length: rows }, (_, r) => r * T + T - 1);
  const logits = await net.head(x, last, false);
  try {
    const [cleanArgmax] = await argmaxRows(logits, Uint32Array.of(0));
    const { nll, dLogits } = await tokenNll(logits, new Int32Array(rows).fill(answerId));
    dLogits.dispose();
    return { probs: Float32Array.from(nll, (v) => Math.exp(-v)), cleanArgmax };
  } finally {
    logits.dispose();
  }
}

/**
 * The base run: `1 + samples` copies, noise row j added to the token embeddings of the subject in row
 * 1 + j (before learned position embeddings), the residual entering each block kept.
 */
export async function traceBase(
  net: Transformer,
  fact: TraceFact,
  noise: Float32Array,
  samples: number,
): Promise<TraceBase> {
  const T = fact.inputIds.length, L = net.blocks.length, d = net.config.hiddenSize;
  const [b, e] = fact.subjectRange, n = e - b;
  if (noise.length !== samples * n * d) {
    throw new Error(`traceBase: noise has ${noise.length} values, expected ${samples * n * d}`);
  }
  const rows = 1 + samples;
  const batch = padBatch(Array.from({ length: rows }, () => [...fact.inputIds]));
  let x = await embedding(net.embed, batch.ids, { outDtype: net.act });
  const inputs: Tensor[] = [];
  try {
    const noiseRows: number[] = [];
    for (let j = 0; j < samples; j++) for (let p = 0; p < n; p++) noiseRows.push((1 + j) * T + b + p);
    const nt = Tensor.from(net.embed.gpu, noise, [noiseRows.length, d], "f32", { name: "trace.noise" });
    try {
      await scatterAddRows(x, nt, Uint32Array.from(noiseRows));
    } finally {
      nt.dispose();
    }
    if (net.positions) {
      const pos = new Uint32Array(rows * T);
      for (let r = 0; r < rows; r++) for (let p = 0; p < T; p++) pos[r * T + p] = p;
      await embedding(net.positions, pos, { accumulate: x });
    }
    for (let i = 0; i < L; i++) {
      x = await moveTo(x, net.deviceOf(i));
      inputs.push(await cast(x, x.dtype));
      await net.block(i, x, batch);
    }
    const { probs, cleanArgmax } = await answerProbs(net, x, rows, T, fact.answerId);
    return {
      fact,
      samples,
      high: probs[0],
      cleanArgmax,
      lowPerSample: probs.slice(1),
      inputs,
      dispose: () => inputs.forEach((t) => t.dispose()),
    };
  } catch (err) {
    inputs.forEach((t) => t.dispose());
    throw err;
  } finally {
    x.dispose();
  }
}

/** The first layer a restore set touches (where its forward must start). */
export function startLayer(set: readonly RestoreSite[]): number {
  return Math.min(...set.map((s) => s.layer));
}

/**
 * One batched forward of restore sets from block `start` (≤ every set's first restored layer): returns
 * `probs[g·samples + j]`, the answer's probability in corrupted row j under set g.
 */
export async function restoreForward(
  net: Transformer,
  base: TraceBase,
  sets: readonly (readonly RestoreSite[])[],
  start: number = Math.min(...sets.map(startLayer)),
): Promise<Float32Array> {
  const { fact, samples } = base;
  const T = fact.inputIds.length, L = net.blocks.length;
  if (!(start >= 0 && start < L)) throw new Error(`restoreForward: start layer ${start} outside 0..${L - 1}`);
  const rows = 1 + sets.length * samples;
  const batch = padBatch(Array.from({ length: rows }, () => [...fact.inputIds]));
  const plan = Array.from({ length: L }, () => ({
    hidden: { src: [] as number[], dst: [] as number[] },
    mlp: { src: [] as number[], dst: [] as number[] },
    attn: { src: [] as number[], dst: [] as number[] },
  }));
  sets.forEach((set, g) => {
    for (const site of set) {
      if (site.layer < start || site.layer >= L || site.token < 0 || site.token >= T) {
        throw new Error(
          `restoreForward: site ${JSON.stringify(site)} is outside ${T} tokens × layers ${start}..${L - 1}`,
        );
      }
      const p = plan[site.layer][site.kind];
      for (let j = 0; j < samples; j++) {
        p.src.push(site.token);
        p.dst.push((1 + g * samples + j) * T + site.token);
      }
    }
  });
  // Rows of the batch from the base run's residual entering block `start`: row 0 clean, then the
  // corrupted rows once per set.
  const src = new Uint32Array(rows * T);
  for (let t = 0; t < T; t++) src[t] = t;
  for (let g = 0; g < sets.length; g++) {
    for (let j = 0; j < samples; j++) {
      const r = 1 + g * samples + j;
      for (let t = 0; t < T; t++) src[r * T + t] = (1 + j) * T + t;
    }
  }
  let x = await gatherRows(base.inputs[start], src, { outDtype: net.act });
  try {
    for (let i = start; i < L; i++) {
      x = await moveTo(x, net.deviceOf(i));
      const pl = plan[i];
      const patch = pl.mlp.dst.length || pl.attn.dst.length
        ? (site: "attn" | "mlp", out: Tensor) => restoreRows(out, pl[site].src, pl[site].dst)
        : undefined;
      await net.block(i, x, batch, undefined, undefined, undefined, patch);
      await restoreRows(x, pl.hidden.src, pl.hidden.dst);
    }
    return (await answerProbs(net, x, rows, T, fact.answerId)).probs.slice(1);
  } finally {
    x.dispose();
  }
}
