/**
 * Knowledge-editing metrics as pure functions over token ids, per-token NLLs and texts, with the exact
 * semantics of EasyEdit (`easyeditor/evaluate/evaluate_utils.py`, `editors/utils.py: summary_metrics`) and
 * of the ROME paper's code (`experiments/py/eval_utils_counterfact.py`, `experiments/summarize.py`).
 * The model-dependent evaluation computes ids / NLLs / generations and calls these.
 *
 * EasyEdit (fractions in [0, 1]):
 * - rewrite_acc / rephrase_acc / portability `<key>_acc`: teacher-forced token accuracy of `prompt + " " +
 *   target` ({@link tokenAccuracy}, {@link teacherForcedAccuracy});
 * - locality `<key>_acc`: agreement of the pre- and post-edit argmax tokens at the target positions
 *   ({@link locality});
 * - fluency: n-gram entropy of generations ({@link nGramEntropy}).
 *
 * ROME paper (from mean per-token NLLs of ` target_new` and ` target_true` after each prompt, i.e.
 * ROME's `test_batch_prediction`; P(x) below is exp(−mean NLL), the per-token geometric-mean probability):
 * - ES = mean[P(new) > P(true)], EM = mean[P(new) − P(true)] on the rewrite prompt;
 * - PS / PM the same on paraphrase prompts; NS / NM reversed (true should win) on neighborhood prompts;
 * - S = harmonic mean of ES, PS, NS over the dataset means; GE = n-gram entropy of generations.
 *
 * MQuAKE: multi-hop accuracy, a case counting as correct when the answer to any of its questions matches
 * the new answer or one of its aliases ({@link multiHopCorrect}, {@link multiHopAccuracy}).
 * @module
 */
import type { EvalRecord, MultiHop } from "./datasets/types.ts";

// ---------------------------------------------------------------------------------------------------------
// EasyEdit token metrics

function meanEqual(a: ArrayLike<number>, b: ArrayLike<number>, what: string): number {
  if (a.length !== b.length) {
    throw new RangeError(
      `${what}: length ${a.length} != ${b.length} (EasyEdit compares position by position)`,
    );
  }
  if (a.length === 0) return NaN;
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return eq / a.length;
}

/**
 * EasyEdit's teacher-forced token accuracy: the fraction of target positions where the model's argmax
 * equals the target token (`np.mean(np.equal(ans, label))`). Both arrays must have the same length; NaN
 * for an empty target (numpy's mean of nothing).
 */
export function tokenAccuracy(predIds: ArrayLike<number>, targetIds: ArrayLike<number>): number {
  return meanEqual(predIds, targetIds, "tokenAccuracy");
}

/**
 * The argmax ids that predict the target tokens of a teacher-forced `prompt + " " + target` sequence:
 * positions `promptLen − 1 … L − 2` of the per-position argmax (EasyEdit's `slice_list(..., left=True)`).
 * `promptLen` is the number of tokens of the prompt tokenized alone (BOS included when the tokenizer adds
 * one), plus any left padding.
 */
export function teacherForcedPredictions(argmaxIds: ArrayLike<number>, promptLen: number): number[] {
  if (!Number.isInteger(promptLen) || promptLen < 1 || promptLen > argmaxIds.length) {
    throw new RangeError(`promptLen ${promptLen} outside 1..${argmaxIds.length}`);
  }
  return Array.from(argmaxIds).slice(promptLen - 1, -1);
}

/** The target token ids of a teacher-forced sequence: positions `promptLen … L − 1` of the input ids. */
export function teacherForcedLabels(inputIds: ArrayLike<number>, promptLen: number): number[] {
  if (!Number.isInteger(promptLen) || promptLen < 1 || promptLen > inputIds.length) {
    throw new RangeError(`promptLen ${promptLen} outside 1..${inputIds.length}`);
  }
  return Array.from(inputIds).slice(promptLen);
}

/**
 * EasyEdit's `test_prediction_acc` on one sequence: the argmax over the logits of the tokenized
 * `prompt + " " + target` (`argmaxIds`, one per position), its input ids, and the prompt's token count.
 */
export function teacherForcedAccuracy(
  argmaxIds: ArrayLike<number>,
  inputIds: ArrayLike<number>,
  promptLen: number,
): number {
  if (argmaxIds.length !== inputIds.length) {
    throw new RangeError(`argmax length ${argmaxIds.length} != input length ${inputIds.length}`);
  }
  return tokenAccuracy(
    teacherForcedPredictions(argmaxIds, promptLen),
    teacherForcedLabels(inputIds, promptLen),
  );
}

/**
 * EasyEdit's locality: the fraction of target positions where the post-edit argmax token equals the
 * pre-edit one (`np.mean(np.equal(pre, post))`), e.g. [29, 234, 334] vs [29, 234, 333] → 2/3. Both are
 * {@link teacherForcedPredictions} of `locality_prompt + " " + locality_ground_truth`.
 */
export function locality(preIds: ArrayLike<number>, postIds: ArrayLike<number>): number {
  return meanEqual(preIds, postIds, "locality");
}

// ---------------------------------------------------------------------------------------------------------
// Fluency: n-gram entropy over NLTK-style word tokens

const W = "[\\p{L}\\p{N}_]"; // Python's Unicode \w
const WB_BEFORE = `(?<!${W})`; // Python's \b before a word character
const WB_AFTER = `(?!${W})`; // Python's \b after a word character

type Rule = readonly [RegExp, string];

// The rules of NLTK 3.6.5's NLTKWordTokenizer (the version EasyEdit pins), written for JS regexes.
const STARTING_QUOTES: readonly Rule[] = [
  [/([«“‘„]|`+)/gu, " $1 "],
  [/^"/u, "``"],
  [/(``)/gu, " $1 "],
  [/([ ([{<])("|'')/gu, "$1 `` "],
  [new RegExp(`(')(?!re|ve|ll|m|t|s|d|n)(${W})${WB_AFTER}`, "giu"), "$1 $2"],
];
const PUNCTUATION: readonly Rule[] = [
  [/([^.])(\.)([\])}>"'»”’ ]*)\s*$/u, "$1 $2 $3 "],
  [/([:,])([^\p{Nd}])/gu, " $1 $2"],
  [/([:,])(?=\n?$)/u, " $1 "],
  [/\.{2,}/gu, " $& "],
  [/[;@#$%&]/gu, " $& "],
  [/([^.])(\.)([\])}>"']*)\s*$/u, "$1 $2$3 "],
  [/[?!]/gu, " $& "],
  [/([^'])' /gu, "$1 ' "],
  [/[*]/gu, " $& "],
  [/[\][(){}<>]/gu, " $& "],
  [/--/gu, " -- "],
];
const ENDING_QUOTES: readonly Rule[] = [
  [/([»”’])/gu, " $1 "],
  [/"/gu, " '' "],
  [/(\S)('')/gu, "$1 $2 "],
  [/([^' ])('[sS]|'[mM]|'[dD]|') /gu, "$1 $2 "],
  [/([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) /gu, "$1 $2 "],
];
const CONTRACTIONS: readonly Rule[] = [
  ...[["can", "not"], ["d", "'ye"], ["gim", "me"], ["gon", "na"], ["got", "ta"], ["lem", "me"], [
    "more",
    "'n",
  ]]
    .map(([a, b]) => [new RegExp(`${WB_BEFORE}(${a})(${b})${WB_AFTER}`, "giu"), " $1 $2 "] as const),
  [new RegExp(`${WB_BEFORE}(wan)(na)(?=\\s)`, "giu"), " $1 $2 "],
  [new RegExp(` ('t)(is)${WB_AFTER}`, "giu"), " $1 $2 "],
  [new RegExp(` ('t)(was)${WB_AFTER}`, "giu"), " $1 $2 "],
];

function applyRules(text: string, rules: readonly Rule[]): string {
  for (const [re, sub] of rules) text = text.replace(re, sub);
  return text;
}

/** NLTK's Treebank-style word tokenizer on one sentence (`NLTKWordTokenizer.tokenize`, NLTK 3.6.5). */
export function treebankTokenize(sentence: string): string[] {
  let t = applyRules(sentence, STARTING_QUOTES);
  t = applyRules(t, PUNCTUATION);
  t = " " + t + " ";
  t = applyRules(t, ENDING_QUOTES);
  t = applyRules(t, CONTRACTIONS);
  return t.split(/\s+/u).filter((s) => s !== "");
}

// Common English abbreviations that do not end a sentence (stands in for Punkt's learned list).
const ABBREVIATIONS = new Set(
  ("mr mrs ms dr prof st jr sr vs etc inc ltd co corp no mt ft gen col lt sgt capt rev hon gov sen rep " +
    "jan feb mar apr jun jul aug sep sept oct nov dec al approx dept est fig vol op cf ca pp").split(" "),
);

function endsSentence(chunk: string, next: string): boolean {
  const core = chunk.replace(/["'”’)\]]+$/u, "");
  if (/[?!]$/u.test(core)) return true;
  if (!core.endsWith(".")) return false;
  const word = core.slice(0, -1).replace(/^["'“‘([]+/u, "");
  if (word === "" || word.endsWith(".")) return false; // ellipsis
  if (word.includes(".")) return false; // U.S., e.g
  if (/^\p{L}$/u.test(word)) return false; // an initial
  if (ABBREVIATIONS.has(word.toLowerCase())) return false;
  if (/^\p{Nd}+$/u.test(word) && /^\p{Ll}/u.test(next)) return false; // "in 1990. then" (ordinal-like)
  return true;
}

/**
 * Splits text into sentences the way NLTK's Punkt mostly does: after a word ending in `?`/`!`, or in `.`
 * unless that word is an abbreviation (holds another period, is a single letter, or is a common English
 * abbreviation) or an ellipsis. An approximation of `sent_tokenize` (Punkt's learned model is not shipped);
 * it only matters to {@link wordTokenize} for periods inside a text.
 */
export function splitSentences(text: string): string[] {
  const chunks = [...text.matchAll(/\S+/gu)];
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i];
    if (start < 0) start = c.index;
    const end = c.index + c[0].length;
    if (i === chunks.length - 1 || endsSentence(c[0], chunks[i + 1][0])) {
      out.push(text.slice(start, end));
      start = -1;
    }
  }
  return out;
}

/**
 * `nltk.word_tokenize` (NLTK 3.6.5): sentence split ({@link splitSentences}), then the Treebank word
 * tokenizer on each sentence. Exact on single sentences; across sentences exact up to Punkt's
 * abbreviation list.
 */
export function wordTokenize(text: string): string[] {
  return splitSentences(text).flatMap(treebankTokenize);
}

/** Options of {@link computeNGramEntropy} and {@link nGramEntropy}. */
export interface NGramEntropyOptions {
  /** The n-gram orders (default [2, 3]). */
  ns?: readonly number[];
  /** The weight of each order's entropy (default [2/3, 4/3]). */
  weights?: readonly number[];
  /** How the weighted entropies (and, in {@link nGramEntropy}, the texts) are averaged (default arith). */
  agg?: "arith" | "geom";
}

function aggregate(values: readonly number[], agg: "arith" | "geom"): number {
  if (values.length === 0) return NaN;
  if (agg === "arith") return values.reduce((a, b) => a + b, 0) / values.length;
  // scipy.stats.mstats.gmean: exp(mean(log x)); 0 when any value is 0
  if (values.some((v) => v === 0)) return 0;
  return Math.exp(values.reduce((a, b) => a + Math.log(b), 0) / values.length);
}

/**
 * EasyEdit's / ROME's `compute_n_gram_entropy` of one text: for each n, the Shannon entropy in bits of the
 * frequency distribution of the text's word n-grams ({@link wordTokenize}), times its weight, averaged.
 * A text with fewer than n tokens has entropy 0 for that n.
 */
export function computeNGramEntropy(text: string, opts: NGramEntropyOptions = {}): number {
  const ns = opts.ns ?? [2, 3];
  const weights = opts.weights ?? [2 / 3, 4 / 3];
  if (ns.length !== weights.length) throw new RangeError(`${ns.length} orders but ${weights.length} weights`);
  const tokens = wordTokenize(text);
  const weighted = ns.map((n, k) => {
    const counts = new Map<string, number>();
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join("\u0000");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const total = tokens.length >= n ? tokens.length - n + 1 : 0;
    let h = 0;
    for (const c of counts.values()) {
      const p = c / total;
      h += -p * Math.log(p) / Math.LN2;
    }
    return h * weights[k];
  });
  return aggregate(weighted, opts.agg ?? "arith");
}

/**
 * EasyEdit's / ROME's `n_gram_entropy`: the mean over texts of {@link computeNGramEntropy} (bigram and
 * trigram entropies weighted 2/3 and 4/3). Pass the texts as those tools do: the full decoded generation
 * (prompt included) of each prefix, NFKD-normalised with "\n\n" → " " and end-of-text tokens removed.
 * NaN for no texts.
 */
export function nGramEntropy(texts: readonly string[], opts: NGramEntropyOptions = {}): number {
  return aggregate(texts.map((t) => computeNGramEntropy(t, opts)), opts.agg ?? "arith");
}

// ---------------------------------------------------------------------------------------------------------
// ROME paper metrics

/** ROME's per-prompt result: the mean per-token NLL of ` target_new` and of ` target_true`. */
export interface TargetNlls {
  /** Mean NLL (nats per token) of the new target after the prompt. */
  targetNew: number;
  /** Mean NLL of the true target after the prompt. */
  targetTrue: number;
}

/** The mean per-token negative log-likelihood of a target from its tokens' log-probabilities. */
export function meanNll(targetLogProbs: ArrayLike<number>): number {
  if (targetLogProbs.length === 0) throw new RangeError("meanNll: empty target");
  let s = 0;
  for (let i = 0; i < targetLogProbs.length; i++) s -= targetLogProbs[i];
  return s / targetLogProbs.length;
}

function meanOf(probs: readonly TargetNlls[], f: (p: TargetNlls) => number): number {
  if (probs.length === 0) return NaN;
  let s = 0;
  for (const p of probs) s += f(p);
  return s / probs.length;
}

/** Success: the fraction of prompts where the new target is likelier (`target_true > target_new` in NLL). */
const newWins = (p: TargetNlls): number => (p.targetTrue > p.targetNew ? 1 : 0);
/** Magnitude: `exp(−nll_new) − exp(−nll_true)`. */
const newMargin = (p: TargetNlls): number => Math.exp(-p.targetNew) - Math.exp(-p.targetTrue);

/** ES (efficacy score): fraction of rewrite prompts with P(new) > P(true) (strict). NaN for none. */
export function efficacyScore(rewrite: readonly TargetNlls[]): number {
  return meanOf(rewrite, newWins);
}

/** EM (efficacy magnitude): mean of P(new) − P(true) on the rewrite prompts. */
export function efficacyMagnitude(rewrite: readonly TargetNlls[]): number {
  return meanOf(rewrite, newMargin);
}

/** PS (paraphrase score): fraction of paraphrase prompts with P(new) > P(true). */
export function paraphraseScore(paraphrase: readonly TargetNlls[]): number {
  return meanOf(paraphrase, newWins);
}

/** PM (paraphrase magnitude): mean of P(new) − P(true) on the paraphrase prompts. */
export function paraphraseMagnitude(paraphrase: readonly TargetNlls[]): number {
  return meanOf(paraphrase, newMargin);
}

/** NS (neighborhood score): fraction of neighborhood prompts where the true target stays likelier
 * (`target_true < target_new` in NLL, strict). */
export function neighborhoodScore(neighborhood: readonly TargetNlls[]): number {
  return meanOf(neighborhood, (p) => (p.targetTrue < p.targetNew ? 1 : 0));
}

/** NM (neighborhood magnitude): mean of P(true) − P(new) on the neighborhood prompts. */
export function neighborhoodMagnitude(neighborhood: readonly TargetNlls[]): number {
  return meanOf(neighborhood, (p) => Math.exp(-p.targetTrue) - Math.exp(-p.targetNew));
}

/**
 * The harmonic mean (scipy.stats.hmean): n / Σ 1/xᵢ; 0 when any value is 0, NaN for no values or a NaN.
 * Negative values throw (scipy refuses them).
 */
export function harmonicMean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let inv = 0;
  for (const v of values) {
    if (Number.isNaN(v)) return NaN;
    if (v < 0) throw new RangeError(`harmonicMean: negative value ${v}`);
    if (v === 0) return 0;
    inv += 1 / v;
  }
  return values.length / inv;
}

/** ROME's score S: the harmonic mean of ES, PS and NS (the dataset means). */
export function romeScore(es: number, ps: number, ns: number): number {
  return harmonicMean([es, ps, ns]);
}

// ---------------------------------------------------------------------------------------------------------
// MQuAKE

/** Decides whether a produced answer matches an expected answer or one of its aliases. */
export type AnswerMatcher = (produced: string, answer: string, aliases: readonly string[]) => boolean;

/** MQuAKE's match: the (trimmed) produced answer equals the answer or one of its aliases exactly. */
export function exactAnswerMatch(produced: string, answer: string, aliases: readonly string[]): boolean {
  const p = produced.trim();
  return p === answer.trim() || aliases.some((a) => p === a.trim());
}

/** SQuAD's answer normalisation (as EasyEdit's `normalize_answer`): lower case, no punctuation, no
 * articles, single spaces. */
export function normalizeAnswer(s: string): string {
  return s.toLowerCase()
    .replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, "")
    .replace(/\b(a|an|the)\b/g, " ")
    .split(/\s+/).filter((w) => w !== "").join(" ");
}

/** Match after {@link normalizeAnswer} on both sides (EasyEdit's `exact_match_score`). */
export function normalizedAnswerMatch(produced: string, answer: string, aliases: readonly string[]): boolean {
  const p = normalizeAnswer(produced);
  return p === normalizeAnswer(answer) || aliases.some((a) => p === normalizeAnswer(a));
}

/** Match when the answer or an alias occurs in the generated text (EasyEdit's `verify_answer`). */
export function containsAnswerMatch(produced: string, answer: string, aliases: readonly string[]): boolean {
  return produced.includes(answer) || aliases.some((a) => produced.includes(a));
}

/** Options of {@link multiHopCorrect} / {@link multiHopAccuracy}. */
export interface MultiHopOptions {
  /** Score against the post-edit answer ("new", default) or the original one (pre-edit accuracy). */
  target?: "new" | "original";
  /** The answer matcher (default {@link exactAnswerMatch}, as MQuAKE's evaluation). */
  match?: AnswerMatcher;
}

/** MQuAKE: a case is correct when the answer produced for ANY of its questions matches. */
export function multiHopCorrect(
  mh: MultiHop,
  answers: readonly string[],
  opts: MultiHopOptions = {},
): boolean {
  const match = opts.match ?? exactAnswerMatch;
  const [answer, aliases] = opts.target === "original"
    ? [mh.answer, mh.answerAliases]
    : [mh.newAnswer, mh.newAnswerAliases];
  return answers.some((a) => match(a, answer, aliases));
}

/**
 * MQuAKE multi-hop accuracy: asks `answer(question, record)` for each question of each record (stopping
 * at the first match) and returns the fraction of correct cases with the per-case verdicts. Records
 * without `multiHop` throw.
 */
export async function multiHopAccuracy(
  records: readonly EvalRecord[],
  answer: (question: string, record: EvalRecord) => string | Promise<string>,
  opts: MultiHopOptions = {},
): Promise<{ accuracy: number; correct: boolean[] }> {
  const correct: boolean[] = [];
  for (const r of records) {
    if (!r.multiHop) throw new RangeError(`case ${r.caseId} has no multi-hop questions (not MQuAKE)`);
    let ok = false;
    for (const q of r.multiHop.questions) {
      if (multiHopCorrect(r.multiHop, [await answer(q, r)], opts)) {
        ok = true;
        break;
      }
    }
    correct.push(ok);
  }
  const n = correct.filter((c) => c).length;
  return { accuracy: correct.length ? n / correct.length : NaN, correct };
}

// ---------------------------------------------------------------------------------------------------------
// Aggregation

/** One phase (pre- or post-edit) of one record's results; every field is optional. */
export interface PhaseMetrics {
  /** EasyEdit rewrite_acc: token accuracy per rewrite prompt. */
  rewriteAcc?: number[];
  /** EasyEdit rephrase_acc: token accuracy per rephrase prompt. */
  rephraseAcc?: number[];
  /** EasyEdit locality: per key, the per-prompt pre/post agreement (EasyEdit fills it post-edit). */
  locality?: Record<string, number[]>;
  /** EasyEdit portability: per key, the per-prompt token accuracy. */
  portability?: Record<string, number[]>;
  /** ROME: NLLs on the rewrite prompt(s). */
  rewritePromptsProbs?: TargetNlls[];
  /** ROME: NLLs on the paraphrase prompts. */
  paraphrasePromptsProbs?: TargetNlls[];
  /** ROME: NLLs on the neighborhood prompts. */
  neighborhoodPromptsProbs?: TargetNlls[];
  /** ROME: NLLs on the attribute prompts (recorded; ROME's summary does not use them). */
  attributePromptsProbs?: TargetNlls[];
  /** ROME zsRE: per-token correctness (0/1) on the rewrite prompts. */
  rewritePromptsCorrect?: number[];
  /** ROME zsRE: per-token correctness on the paraphrase prompts. */
  paraphrasePromptsCorrect?: number[];
  /** ROME zsRE: per-token correctness on the neighborhood prompts. */
  neighborhoodPromptsCorrect?: number[];
  /** n-gram entropy of the generations (ROME GE, EasyEdit fluency). */
  ngramEntropy?: number;
  /** ROME reference score (TF-IDF similarity to reference texts). */
  referenceScore?: number;
  /** ROME essence score (perplexity of essence texts). */
  essenceScore?: number;
  /** MQuAKE: whether the case's multi-hop question was answered correctly. */
  multiHopCorrect?: boolean;
}

/** One record's evaluation: its case id, the edit time in seconds, and the pre/post phases. */
export interface RecordMetrics {
  /** The record's case id. */
  caseId: number;
  /** Seconds the edit took. */
  time?: number;
  /** Results before the edit. */
  pre?: PhaseMetrics;
  /** Results after the edit. */
  post?: PhaseMetrics;
}

/** EasyEdit's `summary_metrics` layout for one phase (fractions, not percentages). */
export interface EasyEditPhaseSummary {
  /** Mean of all rewrite accuracies. */
  rewrite_acc?: number;
  /** Mean of all rephrase accuracies. */
  rephrase_acc?: number;
  /** Per `<key>_acc`: mean over records of the record's mean. */
  locality?: Record<string, number>;
  /** Per `<key>_acc`: mean over records of the record's mean. */
  portability?: Record<string, number>;
  /** Mean n-gram entropy of the records that have one (KnowEdit's "Fluency", not ×100). */
  fluency?: number;
  /** MQuAKE multi-hop accuracy: fraction of correct cases. */
  multi_hop_acc?: number;
}

/** The summary: EasyEdit's layout and ROME's `summarize.py` layout side by side. */
export interface Summary {
  /** Number of records summarised. */
  num_cases: number;
  /** EasyEdit's `Metrics Summary` (`{pre: {...}, post: {...}}`). */
  easyedit: { pre: EasyEditPhaseSummary; post: EasyEditPhaseSummary };
  /**
   * ROME's summary: `<pre|post>_<rewrite|paraphrase|neighborhood>_<success|diff|acc>`,
   * `<phase>_ngram_entropy`, `<phase>_reference_score`, `<phase>_score` (S) and `time`, each
   * `[mean, std]` (population std). As ROME prints: ×100 and rounded to 2 decimals (half to even, like
   * `np.around`) except `essence_score` and `time`; S has std NaN.
   */
  rome: Record<string, [number, number]>;
}

function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

function std(xs: readonly number[]): number {
  const m = mean(xs);
  return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
}

/** numpy's `around(x, decimals)`: `rint(x · 10^d) / 10^d` with round-half-to-even. */
export function roundHalfEven(x: number, decimals: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** decimals;
  const y = x * f;
  let r = Math.round(y);
  if (Math.abs(y % 1) === 0.5 && r % 2 !== 0) r -= 1; // ties go to the even neighbour
  return r / f;
}

function easyEditPhase(records: readonly RecordMetrics[], phase: "pre" | "post"): EasyEditPhaseSummary {
  const out: EasyEditPhaseSummary = {};
  const phases = records.map((r) => r[phase]).filter((p): p is PhaseMetrics => p !== undefined);
  for (const [key, field] of [["rewrite_acc", "rewriteAcc"], ["rephrase_acc", "rephraseAcc"]] as const) {
    const lists = phases.map((p) => p[field]).filter((v): v is number[] => v !== undefined);
    // numpy's mean over the list of per-record lists = mean over every value
    if (lists.length) out[key] = mean(lists.flat());
  }
  for (const section of ["locality", "portability"] as const) {
    const keys = new Set<string>();
    for (const p of phases) for (const k of Object.keys(p[section] ?? {})) keys.add(k);
    if (keys.size === 0) continue;
    const sec: Record<string, number> = {};
    for (const k of [...keys].sort()) {
      const perRecord = phases.map((p) => p[section]?.[k]).filter((v): v is number[] =>
        v !== undefined && v.length > 0
      )
        .map(mean);
      if (perRecord.length) sec[`${k}_acc`] = mean(perRecord);
    }
    out[section] = sec;
  }
  const flu = phases.map((p) => p.ngramEntropy).filter((v): v is number => v !== undefined);
  if (flu.length) out.fluency = mean(flu);
  const mh = phases.map((p) => p.multiHopCorrect).filter((v): v is boolean => v !== undefined);
  if (mh.length) out.multi_hop_acc = mean(mh.map(Number));
  return out;
}

function romeSummary(records: readonly RecordMetrics[]): Record<string, [number, number]> {
  const cur = new Map<string, number[]>();
  const push = (k: string, v: number) => {
    const l = cur.get(k);
    if (l) l.push(v);
    else cur.set(k, [v]);
  };
  for (const r of records) {
    if (r.time !== undefined) push("time", r.time);
    for (const prefix of ["pre", "post"] as const) {
      const p = r[prefix];
      if (!p) continue;
      // an empty list is treated as absent (ROME would average it to NaN)
      const probs: [string, TargetNlls[] | undefined, boolean][] = [
        ["rewrite", p.rewritePromptsProbs, false],
        ["paraphrase", p.paraphrasePromptsProbs, false],
        ["neighborhood", p.neighborhoodPromptsProbs, true],
      ];
      for (const [name, list, reversed] of probs) {
        if (!list || list.length === 0) continue;
        push(`${prefix}_${name}_success`, reversed ? neighborhoodScore(list) : efficacyScore(list));
        push(`${prefix}_${name}_diff`, reversed ? neighborhoodMagnitude(list) : efficacyMagnitude(list));
      }
      const correct: [string, number[] | undefined][] = [
        ["rewrite", p.rewritePromptsCorrect],
        ["paraphrase", p.paraphrasePromptsCorrect],
        ["neighborhood", p.neighborhoodPromptsCorrect],
      ];
      for (const [name, list] of correct) if (list && list.length) push(`${prefix}_${name}_acc`, mean(list));
      if (p.ngramEntropy !== undefined) push(`${prefix}_ngram_entropy`, p.ngramEntropy);
      if (p.referenceScore !== undefined) push(`${prefix}_reference_score`, p.referenceScore);
      if (p.essenceScore !== undefined) push(`${prefix}_essence_score`, p.essenceScore);
    }
  }
  const sum: Record<string, [number, number]> = {};
  for (const [k, v] of cur) sum[k] = [mean(v), std(v)];
  for (const prefix of ["pre", "post"]) {
    for (const kind of ["success", "acc"]) {
      const [e, g, s] = ["rewrite", "paraphrase", "neighborhood"].map((n) => `${prefix}_${n}_${kind}`);
      if (g in sum && s in sum) {
        sum[`${prefix}_score`] = [harmonicMean([sum[e]?.[0] ?? NaN, sum[g][0], sum[s][0]]), NaN];
        break;
      }
    }
  }
  for (const k of Object.keys(sum)) {
    if (k.includes("essence_score") || k.includes("time")) continue;
    sum[k] = [roundHalfEven(sum[k][0] * 100, 2), roundHalfEven(sum[k][1] * 100, 2)];
  }
  return Object.fromEntries(Object.entries(sum).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Aggregates per-record results into EasyEdit's and ROME's summaries (see {@link Summary}). EasyEdit:
 * rewrite/rephrase accuracy = mean of every per-prompt value; locality/portability `<key>_acc` = mean over
 * the records that have the key of the record's mean. ROME: per record, success/diff over its prompts;
 * then mean and std over records; S = harmonic mean of the ES, PS, NS means (or of the zsRE accuracies when
 * there are no NLL comparisons).
 */
export function summarize(records: readonly RecordMetrics[]): Summary {
  return {
    num_cases: records.length,
    easyedit: { pre: easyEditPhase(records, "pre"), post: easyEditPhase(records, "post") },
    rome: romeSummary(records),
  };
}
