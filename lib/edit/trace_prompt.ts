/**
 * The inputs of causal tracing: prompts with the subject located as ROME's `find_token_range` does, the
 * answer token, restore windows and sites.
 * @module
 */
import type { Tokenizer } from "../model/tokenizer.ts";

/** Which state a restore overwrites: the block output, or the MLP / attention output before its residual add. */
export type TraceKind = "hidden" | "mlp" | "attn";

/** Every kind, in ROME's order. */
export const TRACE_KINDS: readonly TraceKind[] = ["hidden", "mlp", "attn"];

/** An error in a tracing request (subject not in the prompt, bad window, …). */
export class TraceError extends Error {
  /** `where` names the input (a file and record, or a CLI flag). */
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = "TraceError";
  }
}

/** A tokenized prompt with its subject located. */
export interface TracePrompt {
  /** The full prompt text. */
  text: string;
  /** Its token ids (BOS only when asked). */
  inputIds: number[];
  /** Each token decoded alone. */
  tokens: string[];
  /** The subject's tokens `[b, e)` (half-open), as ROME's `find_token_range` finds them. */
  subjectRange: [number, number];
}

/**
 * ROME's `find_token_range`: decode every token alone, join, find the subject's first occurrence
 * (in code points, as Python counts); b = the first token ending past its start, e = 1 + the first token
 * reaching its end.
 */
export function findTokenRange(
  tokenizer: Tokenizer,
  ids: readonly number[],
  subject: string,
  where = "trace",
): [number, number] {
  if (subject.length === 0) throw new TraceError(where, "the subject is empty");
  const toks = ids.map((id) => tokenizer.decode([id]));
  const whole = toks.join("");
  const unit = whole.indexOf(subject);
  if (unit < 0) {
    throw new TraceError(
      where,
      `subject ${JSON.stringify(subject)} is not in the prompt ${JSON.stringify(whole)}`,
    );
  }
  const charLoc = [...whole.slice(0, unit)].length, subjLen = [...subject].length;
  let loc = 0, start = -1;
  for (let i = 0; i < toks.length; i++) {
    loc += [...toks[i]].length;
    if (start < 0 && loc > charLoc) start = i;
    if (loc >= charLoc + subjLen) return [start, i + 1];
  }
  throw new TraceError(where, `subject ${JSON.stringify(subject)} runs past the prompt's tokens`);
}

/** Options of {@link tracePrompt}. */
export interface TracePromptOptions {
  /** Prepend BOS (default false, as the oracle in ../shared and ROME's GPT models). */
  addBos?: boolean;
  /** Names the input in errors. */
  where?: string;
}

/**
 * Tokenizes a prompt for tracing: a template with one `{}` is filled with the subject; a full prompt must
 * contain the subject.
 */
export function tracePrompt(
  tokenizer: Tokenizer,
  prompt: string,
  subject: string,
  opts: TracePromptOptions = {},
): TracePrompt {
  const where = opts.where ?? "trace";
  const holes = prompt.split("{}").length - 1;
  if (holes > 1) {
    throw new TraceError(where, `the prompt ${JSON.stringify(prompt)} has ${holes} "{}" (one at most)`);
  }
  const text = holes === 1 ? prompt.replace("{}", subject) : prompt;
  if (!text.includes(subject) || subject.length === 0) {
    throw new TraceError(
      where,
      `subject ${JSON.stringify(subject)} is not in the prompt ${JSON.stringify(text)}`,
    );
  }
  const inputIds = tokenizer.encode(text, { addBos: opts.addBos ?? false });
  const subjectRange = findTokenRange(tokenizer, inputIds, subject, where);
  return { text, inputIds, tokens: inputIds.map((id) => tokenizer.decode([id])), subjectRange };
}

/** The answer token of a target: the first token of `' ' + target` (ROME's `target_true` check). */
export function answerToken(tokenizer: Tokenizer, target: string): number {
  const ids = tokenizer.encode(" " + target.trim(), { addBos: false });
  if (ids.length === 0) throw new TraceError("trace", `target ${JSON.stringify(target)} has no tokens`);
  return ids[0];
}

/**
 * The layers restored for a window of `window` centred on `layer` (ROME's `trace_important_window`:
 * `range(max(0, l − w//2), min(L, l − (−w//2)))`).
 */
export function windowLayers(layer: number, window: number, numLayers: number): number[] {
  const lo = Math.max(0, layer - Math.floor(window / 2)),
    hi = Math.min(numLayers, layer + Math.ceil(window / 2));
  const out: number[] = [];
  for (let l = lo; l < hi; l++) out.push(l);
  return out;
}

/** ROME's window (10) capped at half the model's depth: `min(10, ⌊L/2⌋)`, at least 1. */
export function defaultWindow(numLayers: number): number {
  return Math.max(1, Math.min(10, Math.floor(numLayers / 2)));
}

/** Checks a window against the model. */
export function checkWindow(window: number, numLayers: number, where = "trace"): void {
  if (!Number.isInteger(window) || window < 1) {
    throw new TraceError(where, `window must be a positive integer, got ${window}`);
  }
  if (window > numLayers) {
    throw new TraceError(where, `window ${window} is larger than the model's ${numLayers} layers`);
  }
}

/** One restored state: the clean value of `kind` at (`token`, `layer`). */
export interface RestoreSite {
  kind: TraceKind;
  token: number;
  layer: number;
}

/** A fact to trace: its tokens, subject range and answer token. */
export interface TraceFact {
  inputIds: readonly number[];
  subjectRange: readonly [number, number];
  answerId: number;
}
