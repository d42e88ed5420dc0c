/**
 * ROME's causal tracing (Meng et al. 2022, §2; kmeng01/rome `experiments/causal_trace.py`) on the GPU:
 * noise is added to the subject's token embeddings (before position embeddings) of `samples` corrupted
 * copies of the prompt that share one clean row; restoring the clean value of one state — the block output
 * (`hidden`) or a window of MLP / attention outputs (`mlp`, `attn`) at one token — shows how much of the
 * answer's probability that state carries. Many restore sets run in one batched forward
 * (lib/edit/trace_forward.ts).
 * @module
 */
import { padBatch, type Transformer } from "../model/transformer.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { argmaxRows } from "../ops/loss.ts";
import { embeddingStd, seededNoise } from "./trace_noise.ts";
import { applyOverrides, type AutoLayerRecord, type RomeHparams } from "./hparams.ts";

export * from "./trace_prompt.ts";
import { restoreForward, startLayer, traceBase } from "./trace_forward.ts";
import {
  answerToken,
  checkWindow,
  defaultWindow,
  type RestoreSite,
  TRACE_KINDS,
  TraceError,
  type TraceFact,
  type TraceKind,
  tracePrompt,
  windowLayers,
} from "./trace_prompt.ts";

/**
 * Noise for a fact: `samples × (e − b) × d_model` values added to the subject's token embeddings, row j
 * to corrupted row j. Either given (e.g. the oracle's stored noise) or drawn as ROME draws it
 * (`level × numpy RandomState(seed).randn(samples, e − b, d)`, re-seeded per fact).
 */
export type TraceNoise = Float32Array | { seed: number; level: number };

/** Resolves {@link TraceNoise} to its values. */
export function noiseValues(
  noise: TraceNoise,
  samples: number,
  subjectTokens: number,
  d: number,
): Float32Array {
  const n = samples * subjectTokens * d;
  if (noise instanceof Float32Array) {
    if (noise.length !== n) {
      throw new TraceError(
        "trace",
        `noise has ${noise.length} values, expected ${samples}·${subjectTokens}·${d} = ${n}`,
      );
    }
    return noise;
  }
  return seededNoise(noise.seed, n, noise.level);
}

/** Options of {@link traceFact}. */
export interface TraceOptions {
  /** Kinds to trace (default all three). */
  kinds?: readonly TraceKind[];
  /** Corrupted rows (default 10). */
  samples?: number;
  /** MLP / attention window (default {@link defaultWindow}). */
  window?: number;
  /** The noise: given values, or ROME's seeded draw (seed, level = noise_factor × embedding std). */
  noise: TraceNoise;
  /** Only these token positions get grid rows (default all; the other rows are NaN). */
  tokens?: readonly number[];
  /** Restore sets per forward (default: as many as fit {@link DEFAULT_TRACE_BATCH_BYTES}, ≤ 64). */
  batchSets?: number;
  /** Called after each forward with the restore sets scored and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Stops between forwards (the partial grid is discarded; callers keep whole facts). */
  signal?: AbortSignal;
}

/** The activation bytes one forward of the default batch may use (restore sets are grouped to fit). */
export const DEFAULT_TRACE_BATCH_BYTES = 512 * 2 ** 20;

/** One fact's causal trace. */
export interface TraceResult {
  /** Clean probability of the answer (ROME's `high_score`). */
  highScore: number;
  /** Mean corrupted probability with nothing restored (`low_score`). */
  lowScore: number;
  /** The corrupted probability of each noised row. */
  lowScorePerSample: number[];
  /** Clean argmax at the last position (the answer ROME takes). */
  cleanArgmax: number;
  /** Whether the clean argmax is the traced answer (ROME's `correct_prediction`). */
  correctPrediction: boolean;
  /** `scores[kind][token][layer]`: mean corrupted probability with that state restored. */
  scores: Partial<Record<TraceKind, number[][]>>;
  /** Window used for `mlp` and `attn`. */
  window: number;
  /** Corrupted rows. */
  samples: number;
  /** Forwards run. */
  forwards: number;
}

/** Restore sets of a grid: kinds × tokens (a count, or the positions) × layers, in that order. */
export function gridSets(
  kinds: readonly TraceKind[],
  tokens: number | readonly number[],
  numLayers: number,
  window: number,
): RestoreSite[][] {
  const sets: RestoreSite[][] = [];
  const list = typeof tokens === "number" ? Array.from({ length: tokens }, (_, t) => t) : tokens;
  for (const kind of kinds) {
    for (const t of list) {
      for (let l = 0; l < numLayers; l++) {
        const layers = kind === "hidden" ? [l] : windowLayers(l, window, numLayers);
        sets.push(layers.map((layer) => ({ kind, token: t, layer })));
      }
    }
  }
  return sets;
}

/** Restore sets per forward that fit `bytes` of activations for this model and prompt length. */
export function traceBatchSets(
  net: Transformer,
  tokens: number,
  samples: number,
  bytes = DEFAULT_TRACE_BATCH_BYTES,
): number {
  const c = net.config, ab = net.act === "f16" ? 2 : 4;
  const perSet = samples * (tokens * (6 * c.hiddenSize + 3 * c.intermediateSize) * ab + 2 * c.vocabSize * 4);
  return Math.max(1, Math.min(64, Math.floor(bytes / perSet)));
}

/**
 * Scores restore sets: sets touching only tokens before the subject are the low score exactly (those
 * positions are the same in clean and corrupted rows); the others, sorted by their first restored layer,
 * run `batchSets` at a time, each batch from its earliest set's first layer. Returns every set's per-sample probabilities.
 */
export async function scoreRestoreSets(
  net: Transformer,
  fact: TraceFact,
  noise: Float32Array,
  samples: number,
  sets: readonly (readonly RestoreSite[])[],
  opts: { batchSets: number; onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<{ high: number; cleanArgmax: number; low: Float32Array; probs: Float32Array; forwards: number }> {
  const base = await traceBase(net, fact, noise, samples);
  try {
    const probs = new Float32Array(sets.length * samples);
    const todo: number[] = [];
    sets.forEach((set, s) => {
      if (set.every((site) => site.token < fact.subjectRange[0])) probs.set(base.lowPerSample, s * samples);
      else todo.push(s);
    });
    // Sorted by first restored layer, so each batch starts as late as its earliest set allows.
    const start = todo.map((s) => startLayer(sets[s]));
    const order = todo.map((_, k) => k).sort((a, b) => start[a] - start[b]);
    let done = sets.length - todo.length, forwards = 1;
    opts.onProgress?.(done, sets.length);
    for (let k = 0; k < order.length; k += opts.batchSets) {
      opts.signal?.throwIfAborted();
      const part = order.slice(k, k + opts.batchSets);
      const p = await restoreForward(net, base, part.map((q) => sets[todo[q]]), start[part[0]]);
      forwards++;
      part.forEach((q, g) => probs.set(p.subarray(g * samples, (g + 1) * samples), todo[q] * samples));
      done += part.length;
      opts.onProgress?.(done, sets.length);
    }
    return { high: base.high, cleanArgmax: base.cleanArgmax, low: base.lowPerSample, probs, forwards };
  } finally {
    base.dispose();
  }
}

function checkFact(net: Transformer, fact: TraceFact): void {
  const T = fact.inputIds.length, [b, e] = fact.subjectRange;
  if (T === 0) throw new TraceError("trace", "the prompt has no tokens");
  if (!(Number.isInteger(b) && Number.isInteger(e) && 0 <= b && b < e && e <= T)) {
    throw new TraceError("trace", `subject range [${b}, ${e}) is not inside the prompt's ${T} tokens`);
  }
  if (!Number.isInteger(fact.answerId) || fact.answerId < 0 || fact.answerId >= net.config.vocabSize) {
    throw new TraceError("trace", `answer id ${fact.answerId} is outside the vocabulary`);
  }
  if (net.positions && T > net.positions.shape[0]) {
    throw new TraceError(
      "trace",
      `the prompt has ${T} tokens, over the model's ${net.positions.shape[0]} positions`,
    );
  }
}

/**
 * ROME's `calculate_hidden_flow` for the given kinds: the clean and corrupted scores and the grid of
 * restored scores, `scores[kind][token][layer]`, in about `1 + kinds·(T − b)·L / batchSets` forwards.
 */
export async function traceFact(net: Transformer, fact: TraceFact, opts: TraceOptions): Promise<TraceResult> {
  checkFact(net, fact);
  const L = net.blocks.length, T = fact.inputIds.length, samples = opts.samples ?? 10;
  if (!Number.isInteger(samples) || samples < 1) {
    throw new TraceError("trace", `samples must be ≥ 1, got ${samples}`);
  }
  const window = opts.window ?? defaultWindow(L);
  checkWindow(window, L);
  const kinds = opts.kinds ?? TRACE_KINDS;
  const noise = noiseValues(
    opts.noise,
    samples,
    fact.subjectRange[1] - fact.subjectRange[0],
    net.config.hiddenSize,
  );
  const tokens = opts.tokens ?? Array.from({ length: T }, (_, t) => t);
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw new TraceError("trace", `token ${t} is outside the prompt's ${T} tokens`);
    }
  }
  const sets = gridSets(kinds, tokens, L, window);
  const batchSets = opts.batchSets ?? traceBatchSets(net, T, samples);
  const r = await scoreRestoreSets(net, fact, noise, samples, sets, { ...opts, batchSets });
  const mean = (s: number) => {
    let acc = 0;
    for (let j = 0; j < samples; j++) acc += r.probs[s * samples + j];
    return acc / samples;
  };
  const scores: Partial<Record<TraceKind, number[][]>> = {};
  let s = 0;
  for (const kind of kinds) {
    const grid: number[][] = Array.from({ length: T }, () => new Array<number>(L).fill(NaN));
    for (const t of tokens) for (let l = 0; l < L; l++) grid[t][l] = mean(s++);
    scores[kind] = grid;
  }
  return {
    highScore: r.high,
    lowScore: r.low.reduce((a, v) => a + v, 0) / samples,
    lowScorePerSample: Array.from(r.low),
    cleanArgmax: r.cleanArgmax,
    correctPrediction: r.cleanArgmax === fact.answerId,
    scores,
    window,
    samples,
    forwards: r.forwards,
  };
}

/** The clean argmax at the last position of a prompt (ROME's answer when no target is given). */
export async function cleanPrediction(net: Transformer, inputIds: readonly number[]): Promise<number> {
  const out = await net.forward(padBatch([[...inputIds]]), { logitRows: "last" });
  try {
    const [id] = await argmaxRows(out.logits);
    return id;
  } finally {
    out.logits.dispose();
  }
}

/** A prompt for {@link suggestLayer}: a template with `{}` (or a full prompt) and its subject. */
export interface SuggestPrompt {
  prompt: string;
  subject: string;
  /** The answer; default the clean argmax (ROME's choice). */
  target?: string;
}

/** What {@link suggestLayer} found. */
export interface LayerSuggestion {
  /** The layer whose MLP has the largest average indirect effect at the last subject token. */
  layer: number;
  /** Its effect minus the runner-up's. */
  margin: number;
  /** The runner-up layer. */
  runnerUp: number;
  /** Average indirect effect per layer (mean restored − mean corrupted probability). */
  aie: number[];
  /** Facts averaged. */
  facts: number;
  /** MLP window used. */
  window: number;
}

/** Options of {@link suggestLayer}. */
export interface SuggestOptions {
  /** Noise level (noise_factor × embedding std). */
  level: number;
  /** Seed of the noise (default 1, re-seeded per fact as ROME does). */
  seed?: number;
  /** MLP window (default 1: each layer's own effect). */
  window?: number;
  samples?: number;
  addBos?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * The edit layer by evidence: the MLP layer with the largest average indirect effect at the last
 * subject token over the prompts (ROME's reason for layer 17 of GPT-2 XL), with its margin.
 */
export async function suggestLayer(
  net: Transformer,
  tokenizer: Tokenizer,
  prompts: readonly SuggestPrompt[],
  opts: SuggestOptions,
): Promise<LayerSuggestion> {
  if (prompts.length === 0) throw new TraceError("suggestLayer", "no prompts to trace");
  const L = net.blocks.length, window = opts.window ?? 1;
  checkWindow(window, L, "suggestLayer");
  if (L < 2) return { layer: 0, margin: NaN, runnerUp: -1, aie: [NaN], facts: 0, window };
  const sum = new Float64Array(L);
  for (const [i, q] of prompts.entries()) {
    const p = tracePrompt(tokenizer, q.prompt, q.subject, { addBos: opts.addBos, where: `prompt ${i}` });
    const answerId = q.target !== undefined
      ? answerToken(tokenizer, q.target)
      : await cleanPrediction(net, p.inputIds);
    const last = p.subjectRange[1] - 1;
    const r = await traceFact(net, { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId }, {
      kinds: ["mlp"],
      tokens: [last],
      window,
      samples: opts.samples,
      noise: { seed: opts.seed ?? 1, level: opts.level },
      signal: opts.signal,
    });
    for (let l = 0; l < L; l++) sum[l] += r.scores.mlp![last][l] - r.lowScore;
    opts.onProgress?.(i + 1, prompts.length);
  }
  const aie = Array.from(sum, (v) => v / prompts.length);
  const order = aie.map((_, l) => l).sort((a, b) => aie[b] - aie[a]);
  return {
    layer: order[0],
    runnerUp: order[1],
    margin: aie[order[0]] - aie[order[1]],
    aie,
    facts: prompts.length,
    window,
  };
}

/** Options of {@link resolveAutoLayer}. */
export interface AutoLayerOptions {
  /** Noise factor (default 3): the level is this × the std of the prompts' subject token embeddings. */
  noiseFactor?: number;
  /** Noise seed (default 1, ROME's). */
  seed?: number;
  /** At most this many prompts are traced (default 10). */
  maxPrompts?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * Resolves `layers: auto`: traces the prompts' MLP effect at the last subject token ({@link suggestLayer},
 * window 1) and returns the hparams with `layers: [best]` and the evidence in `autoLayer`. Hparams without
 * `layers: auto` come back unchanged.
 */
export async function resolveAutoLayer(
  model: { net: Transformer; tokenizer: Tokenizer | null },
  hp: RomeHparams,
  prompts: readonly SuggestPrompt[],
  opts: AutoLayerOptions = {},
): Promise<RomeHparams> {
  if (!hp.layersAuto || hp.layers.length) return hp;
  if (!model.tokenizer) throw new TraceError(hp.source, "layers: auto needs a tokenizer to trace prompts");
  const list = prompts.slice(0, opts.maxPrompts ?? 10);
  if (!list.length) throw new TraceError(hp.source, "layers: auto needs at least one prompt to trace");
  const std = await embeddingStd(model.net, model.tokenizer, list.map((p) => p.subject));
  const level = (opts.noiseFactor ?? 3) * std.std, seed = opts.seed ?? 1;
  const s = await suggestLayer(model.net, model.tokenizer, list, {
    level,
    seed,
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
  const resolved = applyOverrides(hp, { layers: [s.layer] });
  const autoLayer: AutoLayerRecord = { ...s, noiseLevel: level, seed };
  return { ...resolved, layersAuto: true, autoLayer };
}

/** One line describing a resolved `layers: auto`. */
export function autoLayerText(a: AutoLayerRecord): string {
  return `MLP indirect effect ${
    a.aie[a.layer].toFixed(4)
  } at the last subject token over ${a.facts} fact(s), ` +
    `margin ${a.margin.toFixed(4)} over layer ${a.runnerUp}`;
}
