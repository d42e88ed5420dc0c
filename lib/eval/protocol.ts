/**
 * The evaluation protocol: score one record before and after its edit with EasyEdit's and the ROME paper's
 * semantics, and run a list of records independently (edit → evaluate → restore, EasyEdit's default) or
 * sequentially (edits accumulate; afterwards every record is evaluated again on the final model).
 *
 * One phase of one record ({@link evaluatePhase}) is one batched teacher-forced pass
 * (`scoreTargets`) over every (prompt, target) pair the record needs, deduplicated:
 *
 * - EasyEdit: `rewrite_acc` (request prompt, ` target_new`), `rephrase_acc` (each rephrase prompt),
 *   `portability` (each portability prompt with its answer), `locality` (each locality prompt with its
 *   answer: the post-edit argmax tokens compared with the pre-edit ones). Target tokens are those of
 *   `prompt + " " + target` after the prompt's own tokens, exactly as EasyEdit slices them.
 * - ROME CounterFact: mean per-token NLL of ` target_new` and ` target_true` after the rewrite,
 *   paraphrase and neighborhood prompts (ES/EM, PS/PM, NS/NM in the summary). ZsRE records get ROME's
 *   zsRE numbers instead: per-token argmax correctness on the rewrite, paraphrase and locality prompts.
 * - MQuAKE: a case is multi-hop correct when, for one of its questions, the teacher-forced argmax
 *   reproduces every token of the new answer or of one of its aliases.
 * - Optional fluency (ROME GE / EasyEdit fluency): top-k sampled generations from the record's
 *   generation prompts (or the request prompt) with a seed fixed per record, scored by n-gram entropy.
 *
 * Every record result carries the edit's diagnostics (division factor, ‖ΔW‖/‖W‖, NaN fallbacks, stage
 * timings) and the GPU memory in use (peak since the record started).
 * @module
 */
import { GpuError } from "../gpu/errors.ts";
import type { LoadedModel } from "../model/load.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { padBatch, type Transformer } from "../model/transformer.ts";
import { scoreTargets, type TargetScore, topNext } from "../model/score.ts";
import type { EditResult, EditTimings, RomeEditor } from "../edit/rome.ts";
import type { AppliedEdit } from "../edit/applied.ts";
import type { EditRequest as EditorRequest } from "../edit/request.ts";
import { sampleTopK } from "../model/generate.ts";
import { l2 } from "../edit/update.ts";
import { rng } from "../util/random.ts";
import { type DatasetFormat, type EvalRecord, fillTemplate, type RecordRequest } from "./datasets/mod.ts";
import {
  locality,
  meanNll,
  nGramEntropy,
  type PhaseMetrics,
  type TargetNlls,
  tokenAccuracy,
} from "./metrics.ts";

/** How edits relate to each other during a run. */
export type ProtocolKind = "independent" | "sequential";

/** Settings of the optional fluency (n-gram entropy of sampled generations). */
export interface FluencyOptions {
  /** Total length in tokens of each generation, prompt included (ROME's `max_out_len`: 100). */
  maxLength: number;
  /** Top-k of the sampler (ROME's `generate_fast`: 5). */
  topK: number;
  /** Base seed; each record samples with `seed + caseId` before and after its edit. */
  seed: number;
}

/** ROME's fluency settings: 100 tokens, top-5 sampling, seed 0. */
export const DEFAULT_FLUENCY: FluencyOptions = { maxLength: 100, topK: 5, seed: 0 };

/** Argmax ids at the target positions of each locality prompt, per locality key. */
export type LocalityIds = Record<string, number[][]>;

/** One of the model's top next-token predictions after the rewrite prompt. */
export interface TopToken {
  /** Token id. */
  id: number;
  /** Its probability (softmax of the next-token logits). */
  prob: number;
  /** The decoded token. */
  text: string;
}

/** How many top next tokens each phase records after the rewrite prompt. */
export const TOP_K = 5;

/** One evaluated phase of a record. */
export interface PhaseEval {
  /** The metrics, in lib/eval/metrics.ts's layout. */
  metrics: PhaseMetrics;
  /** Argmax ids of the locality prompts (what a later phase's locality is measured against). */
  localityIds: LocalityIds;
  /** The top {@link TOP_K} next tokens after the rewrite prompt. */
  top: TopToken[];
}

/** Options of {@link evaluatePhase}. */
export interface PhaseOptions {
  /** Locality ids of the pre-edit phase: when given, `metrics.locality` is filled (EasyEdit does so post-edit). */
  reference?: LocalityIds;
  /** Compute fluency with these settings (slow: one forward per generated token). */
  fluency?: FluencyOptions | null;
  /** Most (prompt, target) rows per scoring batch (default 64). */
  batchRows?: number;
}

/** What one edit reported: the numbers that tell whether it is healthy. */
export interface EditDiagnostics {
  /** The edit's subject. */
  subject: string;
  /** The edit's new target. */
  targetNew: string;
  /** The edited layer. */
  layer: number;
  /** Checkpoint name of the edited weight. */
  weightName: string;
  /** Update variant (rome, r-rome, p-rome). */
  update: string;
  /** k·u, the denominator of the rank-one update (≤ 0 or tiny: a collapsing edit). */
  divisionFactor: number;
  /** ‖ΔW‖_F / ‖W‖_F. */
  dWRel: number;
  /** v* loss terms: NLL of the first and the last forward. */
  vNll: [number, number];
  /** Forwards the v* optimisation ran. */
  vForwards: number;
  /** Stages rerun with f32 activations after a NaN/inf (e.g. ["v*"]). */
  fallbacks: string[];
  /** The editor's warnings. */
  warnings: string[];
  /** Seconds per stage. */
  timings: EditTimings;
  /** The edit failed (nothing was written); the post phase then scores the unchanged model. */
  error?: string;
}

/** GPU memory of one device while a record ran. */
export interface MemoryUse {
  /** Device label. */
  device: string;
  /** Bytes allocated at the end of the record. */
  liveBytes: number;
  /** Peak bytes allocated while the record ran. */
  peakBytes: number;
}

/** The evaluation of one record: one JSON line of `results.jsonl`. */
export interface RecordResult {
  /** Index of the record in the selected dataset (the first `--limit` records), before sharding. */
  index: number;
  /** The record's case id. */
  caseId: number;
  /** The dataset format. */
  format: DatasetFormat;
  /** The edit (the first of an MQuAKE case's rewrites). */
  request: RecordRequest;
  /** How the record was run. */
  protocol: ProtocolKind;
  /** Metrics before the edit. */
  pre: PhaseMetrics;
  /** Metrics right after the edit. */
  post: PhaseMetrics;
  /** Sequential runs: metrics on the final model (all edits applied); attached from `final.jsonl`. */
  final?: PhaseMetrics;
  /** Diagnostics of each edit (MQuAKE cases apply several). */
  edits: EditDiagnostics[];
  /** Seconds the edit(s) took (ROME's `time`). */
  time: number;
  /** Seconds the two evaluations took. */
  evalSeconds: number;
  /** GPU memory per device. */
  memory: MemoryUse[];
  /** The first edit error, if an edit failed. */
  error?: string;
  /** Sequential runs: the pre-edit locality ids (the final phase's locality reference). */
  localityPre?: LocalityIds;
  /**
   * Sequential runs: the record's applied edits, saved in keg's edits format (lib/edit/edits_io.ts) at this
   * path relative to the run directory (a resumed run re-applies them).
   */
  appliedFile?: string;
  /** Top next tokens after the rewrite prompt per phase (absent in results written before keg recorded them). */
  topK?: { pre: TopToken[]; post: TopToken[]; final?: TopToken[] };
}

// ---------------------------------------------------------------------------------------------------------
// Scoring

/**
 * The target ids of `target` after `prompt`, as EasyEdit slices them: the tokens of `prompt + " " + target`
 * past the tokens of `prompt` alone. When the joint tokenization does not start with the prompt's tokens
 * (a merge across the boundary), falls back to the tokens of `" " + target` without BOS (ROME's way).
 */
export function targetIdsAfter(tok: Tokenizer, prompt: string, target: string): number[] {
  const p = tok.encode(prompt);
  const full = tok.encode(`${prompt} ${target}`);
  if (full.length > p.length && p.every((id, i) => full[i] === id)) return full.slice(p.length);
  return tok.encode(` ${target}`, { addBos: false });
}

/** A deduplicated set of (prompt, target) rows scored in one go. */
class ScoreSet {
  readonly prompts: string[] = [];
  readonly targets: number[][] = [];
  #slots = new Map<string, number>();
  #tok: Tokenizer;
  scores: TargetScore[] = [];

  constructor(tok: Tokenizer) {
    this.#tok = tok;
  }

  /** Adds a row (deduplicated); -1 when the target has no tokens. */
  add(prompt: string, target: string): number {
    const key = `${prompt}\u0000${target}`;
    const have = this.#slots.get(key);
    if (have !== undefined) return have;
    const ids = targetIdsAfter(this.#tok, prompt, target);
    if (ids.length === 0) return -1;
    const slot = this.prompts.length;
    this.prompts.push(prompt);
    this.targets.push(ids);
    this.#slots.set(key, slot);
    return slot;
  }

  async run(net: Transformer, batchRows: number): Promise<void> {
    this.scores = [];
    for (let i = 0; i < this.prompts.length; i += batchRows) {
      const part = await scoreTargets(
        net,
        this.#tok,
        this.prompts.slice(i, i + batchRows),
        this.targets.slice(i, i + batchRows),
      );
      this.scores.push(...part);
    }
  }

  /** Token accuracy of a slot. */
  acc(slot: number): number {
    const s = this.scores[slot];
    return tokenAccuracy(s.argmax, s.targetIds);
  }

  /** Per-token 0/1 correctness of a slot. */
  correct(slot: number): number[] {
    const s = this.scores[slot];
    return s.argmax.map((a, i) => (a === s.targetIds[i] ? 1 : 0));
  }

  nll(slot: number): number {
    return meanNll(this.scores[slot].tokenLogProbs);
  }
}

/** The mean per-token NLLs of new vs true target after each prompt (ROME's `test_batch_prediction`). */
function nllPairs(set: ScoreSet, pairs: [number, number][]): TargetNlls[] {
  return pairs.filter(([a, b]) => a >= 0 && b >= 0).map(([a, b]) => ({
    targetNew: set.nll(a),
    targetTrue: set.nll(b),
  }));
}

/**
 * Evaluates one phase of a record on the model as it is now. See the module doc for what is computed;
 * metrics whose prompts a record lacks are left out (never NaN): a record without rephrase prompts has no
 * `rephraseAcc`, one without ground truth no ROME NLL comparisons.
 */
export async function evaluatePhase(
  model: LoadedModel,
  record: EvalRecord,
  opts: PhaseOptions = {},
): Promise<PhaseEval> {
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${model.dir}: evaluation needs a tokenizer`);
  const req = record.request;
  const set = new ScoreSet(tok);
  const rewrite = fillTemplate(req.prompt, req.subject);
  const truth = req.groundTruth;
  const zsre = record.format === "zsre";

  const rwNew = set.add(rewrite, req.targetNew);
  const rpNew = record.rephrasePrompts.map((p) => set.add(p, req.targetNew));
  const loc = record.localityPrompts.map((l) => ({ key: l.key, slot: set.add(l.prompt, l.groundTruth) }));
  const port = record.portability.map((p) => ({ key: p.key, slot: set.add(p.prompt, p.groundTruth) }));
  let rwTrue = -1, rpTrue: number[] = [], nbNew: number[] = [], nbTrue: number[] = [];
  if (truth !== null && !zsre) {
    rwTrue = set.add(rewrite, truth);
    rpTrue = record.rephrasePrompts.map((p) => set.add(p, truth));
    nbNew = record.neighborhoodPrompts.map((p) => set.add(p, req.targetNew));
    nbTrue = record.neighborhoodPrompts.map((p) => set.add(p, truth));
  }
  const mh = record.multiHop;
  const mhSlots = mh
    ? mh.questions.flatMap((q) => [mh.newAnswer, ...mh.newAnswerAliases].map((a) => set.add(q, a)))
    : [];

  await set.run(model.net, opts.batchRows ?? 64);
  const top = (await topNext(model.net, tok, [rewrite], TOP_K))[0];

  const m: PhaseMetrics = {};
  if (rwNew >= 0) m.rewriteAcc = [set.acc(rwNew)];
  const rp = rpNew.filter((s) => s >= 0);
  if (rp.length) m.rephraseAcc = rp.map((s) => set.acc(s));

  const localityIds: LocalityIds = {};
  for (const { key, slot } of loc) {
    if (slot < 0) continue;
    (localityIds[key] ??= []).push(set.scores[slot].argmax);
  }
  if (opts.reference) {
    const out: Record<string, number[]> = {};
    for (const [key, ids] of Object.entries(localityIds)) {
      const ref = opts.reference[key];
      if (!ref || ref.length !== ids.length) {
        throw new Error(`case ${record.caseId}: locality reference for "${key}" does not match the record`);
      }
      out[key] = ids.map((post, i) => locality(ref[i], post));
    }
    if (Object.keys(out).length) m.locality = out;
  }
  const portability: Record<string, number[]> = {};
  for (const { key, slot } of port) if (slot >= 0) (portability[key] ??= []).push(set.acc(slot));
  if (Object.keys(portability).length) m.portability = portability;

  if (truth !== null && !zsre) {
    const rw = nllPairs(set, [[rwNew, rwTrue]]);
    if (rw.length) m.rewritePromptsProbs = rw;
    const pp = nllPairs(set, rpNew.map((s, i) => [s, rpTrue[i]]));
    if (pp.length) m.paraphrasePromptsProbs = pp;
    const nb = nllPairs(set, nbNew.map((s, i) => [s, nbTrue[i]]));
    if (nb.length) m.neighborhoodPromptsProbs = nb;
  }
  if (zsre) {
    if (rwNew >= 0) m.rewritePromptsCorrect = set.correct(rwNew);
    if (rp.length) m.paraphrasePromptsCorrect = rp.flatMap((s) => set.correct(s));
    const nb = loc.filter((l) => l.slot >= 0);
    if (nb.length) m.neighborhoodPromptsCorrect = nb.flatMap((l) => set.correct(l.slot));
  }
  if (mh) m.multiHopCorrect = mhSlots.some((s) => s >= 0 && set.acc(s) === 1);

  if (opts.fluency) {
    const prefixes = record.generationPrompts.length ? record.generationPrompts : [rewrite];
    const texts = await sampleTexts(model.net, tok, prefixes, {
      ...opts.fluency,
      seed: opts.fluency.seed + record.caseId,
    });
    m.ngramEntropy = nGramEntropy(texts);
  }
  return { metrics: m, localityIds, top };
}

// ---------------------------------------------------------------------------------------------------------
// Sampled generation (fluency)

/**
 * Top-k sampled continuations of `prompts` (batched, one forward per token) to `maxLength` tokens in all,
 * decoded whole (prompt included) as ROME and EasyEdit score them: special tokens dropped, NFKD,
 * "\n\n" → " ". Deterministic for a seed.
 */
export async function sampleTexts(
  net: Transformer,
  tok: Tokenizer,
  prompts: string[],
  opts: FluencyOptions,
): Promise<string[]> {
  const r = rng(opts.seed);
  const maxLength = Math.min(opts.maxLength, net.config.maxPositions);
  const seqs = prompts.map((p) => tok.encode(p));
  const active = seqs.map((s) => s.length < maxLength);
  const V = net.config.vocabSize;
  while (active.some((a) => a)) {
    const rows = seqs.map((_, i) => i).filter((i) => active[i]);
    const res = await net.forward(padBatch(rows.map((i) => seqs[i])), { logitRows: "last" });
    const logits = await res.logits.read();
    res.logits.dispose();
    rows.forEach((i, j) => {
      const next = sampleTopK(logits.subarray(j * V, (j + 1) * V), opts.topK, r);
      seqs[i].push(next);
      if (seqs[i].length >= maxLength || (tok.eosId !== null && next === tok.eosId)) active[i] = false;
    });
  }
  return seqs.map((s) =>
    tok.decode(s, { skipSpecialTokens: true }).normalize("NFKD").replaceAll("\n\n", " ")
  );
}

// ---------------------------------------------------------------------------------------------------------
// Edits

/** The editor's request for a dataset request (`caseId` attached). */
export function toEditorRequest(req: RecordRequest, caseId: number): EditorRequest {
  const out: EditorRequest = { prompt: req.prompt, subject: req.subject, targetNew: req.targetNew, caseId };
  if (req.groundTruth !== null) out.groundTruth = req.groundTruth;
  return out;
}

/**
 * The diagnostics of an {@link EditResult}. With `weightNorm` (‖W‖_F of the unedited weight), ‖ΔW‖/‖W‖ is
 * recomputed against it, so that it does not depend on which edits the editor saw first (a resumed
 * sequential run re-applies earlier edits before its first own edit).
 */
export function diagnosticsOf(result: EditResult, weightNorm?: number): EditDiagnostics {
  const { applied: a, report: e } = result;
  const v = e.vSteps;
  return {
    subject: a.requests[0].subject,
    targetNew: a.requests[0].targetNew,
    layer: a.layer,
    weightName: a.weightName,
    update: e.update,
    divisionFactor: e.rankOne.divisionFactor,
    dWRel: weightNorm ? (l2(e.rankOne.r) * l2(e.rankOne.u)) / weightNorm : e.dWRel,
    vNll: [v[0]?.nll ?? NaN, v[v.length - 1]?.nll ?? NaN],
    vForwards: v.length,
    fallbacks: [...e.fallbacks],
    warnings: [...e.warnings],
    timings: { ...e.timings },
  };
}

/** The requests a record edits: every rewrite of an MQuAKE case, else the one request. */
export function recordRequests(record: EvalRecord): RecordRequest[] {
  return record.multiHop?.requests.length ? record.multiHop.requests : [record.request];
}

interface RecordEdits {
  diagnostics: EditDiagnostics[];
  applied: AppliedEdit[];
  error?: string;
}

async function editRecord(editor: RomeEditor, record: EvalRecord, weightNorm: number): Promise<RecordEdits> {
  const out: RecordEdits = { diagnostics: [], applied: [] };
  for (const req of recordRequests(record)) {
    const t0 = performance.now();
    try {
      const e = await editor.edit(toEditorRequest(req, record.caseId));
      out.applied.push(e.applied);
      out.diagnostics.push(diagnosticsOf(e, weightNorm));
    } catch (err) {
      if (err instanceof GpuError) throw err; // the device is gone: no point going on
      const msg = err instanceof Error ? err.message : String(err);
      const t = (performance.now() - t0) / 1000;
      out.diagnostics.push({
        subject: req.subject,
        targetNew: req.targetNew,
        layer: editor.layer,
        weightName: editor.weight.name,
        update: editor.hp.update,
        divisionFactor: NaN,
        dWRel: NaN,
        vNll: [NaN, NaN],
        vForwards: 0,
        fallbacks: [],
        warnings: [],
        timings: { templates: 0, kStar: 0, vStar: 0, solve: 0, update: 0, total: t },
        error: msg,
      });
      out.error ??= msg;
      break;
    }
  }
  return out;
}

function memoryOf(model: LoadedModel): MemoryUse[] {
  return model.net.devices.map((g) => {
    const m = g.memory();
    return { device: g.label, liveBytes: m.liveBytes, peakBytes: m.peakBytes };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Runs

/** A record with its index in the selected dataset. */
export interface IndexedRecord {
  /** Index in the selected dataset (before sharding). */
  index: number;
  /** The record. */
  record: EvalRecord;
}

/** Final metrics of a sequential run's record. */
export interface FinalResult {
  /** The record's index. */
  index: number;
  /** Its case id. */
  caseId: number;
  /** How many records' edits the final model holds (the run's size). */
  editsApplied: number;
  /** The metrics on the final model. */
  final: PhaseMetrics;
  /** Top next tokens after the rewrite prompt on the final model. */
  topK?: TopToken[];
}

/** Where the protocol is in a run (for progress). */
export type RunStage = "pre" | "edit" | "final";

/** Options of {@link runProtocol}. */
export interface RunOptions {
  /** independent (default) or sequential. */
  protocol?: ProtocolKind;
  /** Fluency settings, or null/undefined for none. */
  fluency?: FluencyOptions | null;
  /** Results already done (resume), by index: skipped; a sequential run re-applies their edits. */
  done?: ReadonlyMap<number, RecordResult>;
  /** Sequential resume: the applied edits of a done record (read from where `onRecord` saved them). */
  loadApplied?: (r: RecordResult) => Promise<AppliedEdit[]>;
  /** Sequential: final results already done for this run's size, by index. */
  doneFinal?: ReadonlyMap<number, FinalResult>;
  /**
   * Called with each new record result and the edits it applied, in index order (persist them here; a
   * sequential run's `r.appliedFile` may be set by this callback before `r` is written).
   */
  onRecord: (r: RecordResult, applied: AppliedEdit[]) => void | Promise<void>;
  /** Sequential: called with each record's final metrics. */
  onFinal?: (f: FinalResult) => void | Promise<void>;
  /** Progress: `done` of the `total` units of `stage` finished (called with 0 when a stage starts). */
  onProgress?: (stage: RunStage, done: number, total: number, last?: RecordResult) => void;
  /** Most (prompt, target) rows per scoring batch. */
  batchRows?: number;
}

/**
 * Runs the records through the protocol on `editor`'s model (which must be unedited on entry).
 *
 * - independent: per record, pre → edit(s) → post → `editor.restore()`;
 * - sequential (EasyEdit's `sequential_edit` plus what it lacks): pre of every pending record on the
 *   unedited model, then the saved edits of done records are re-applied in index order, then per record
 *   edit(s) → post (right after its own edit) with edits kept; finally every record is evaluated again on
 *   the final model (`final`, EasyEdit's sequential "post"). Locality always compares with the pre phase.
 *
 * The model is left as the protocol leaves it (independent: unedited; sequential: all edits applied).
 */
export async function runProtocol(
  model: LoadedModel,
  editor: RomeEditor,
  items: readonly IndexedRecord[],
  opts: RunOptions,
): Promise<void> {
  const protocol = opts.protocol ?? "independent";
  const done = opts.done ?? new Map<number, RecordResult>();
  const sorted = [...items].sort((a, b) => a.index - b.index);
  const pending = sorted.filter((it) => !done.has(it.index));
  const phase = { fluency: opts.fluency ?? null, batchRows: opts.batchRows };
  const progress = opts.onProgress ?? (() => {});
  const resetPeaks = () => model.net.devices.forEach((g) => g.resetPeak());
  const weightNorm = l2(await editor.weight.w.read()); // unedited on entry

  if (protocol === "independent") {
    let n = 0;
    progress("edit", 0, pending.length);
    for (const { index, record } of pending) {
      resetPeaks();
      const t0 = performance.now();
      const pre = await evaluatePhase(model, record, phase);
      const t1 = performance.now();
      const edits = await editRecord(editor, record, weightNorm);
      const t2 = performance.now();
      const post = await evaluatePhase(model, record, { ...phase, reference: pre.localityIds });
      const t3 = performance.now();
      const memory = memoryOf(model);
      if (editor.history.length) await editor.restore();
      const result = resultOf(index, record, protocol, pre, post, edits, {
        time: (t2 - t1) / 1000,
        evalSeconds: (t1 - t0 + t3 - t2) / 1000,
        memory,
      });
      await opts.onRecord(result, edits.applied);
      progress("edit", ++n, pending.length, result);
    }
    return;
  }

  // sequential: done records must be a prefix of the run (edits are applied in index order)
  const firstPending = pending[0]?.index ?? Infinity;
  const late = sorted.find((it) => done.has(it.index) && it.index > firstPending);
  if (late) {
    throw new Error(
      `sequential resume: record ${late.index} is done but record ${firstPending} is not; a sequential run's ` +
        `results must be a prefix of the records (was the dataset or --limit changed?)`,
    );
  }
  const pres = new Map<number, PhaseEval>();
  if (pending.length) progress("pre", 0, pending.length);
  for (const [n, { index, record }] of pending.entries()) {
    pres.set(index, await evaluatePhase(model, record, phase));
    progress("pre", n + 1, pending.length);
  }
  for (const { index, record } of sorted) {
    const r = done.get(index);
    if (!r) break;
    if (!opts.loadApplied) throw new Error(`sequential resume: no way to read the applied edits was given`);
    await editor.adopt(await opts.loadApplied(r), `record ${index} (case ${record.caseId})`);
  }
  const localityPre = new Map<number, LocalityIds>();
  for (const it of sorted) {
    const r = done.get(it.index);
    if (r) localityPre.set(it.index, r.localityPre ?? {});
  }
  let n = 0;
  if (pending.length) progress("edit", 0, pending.length);
  for (const { index, record } of pending) {
    resetPeaks();
    const pre = pres.get(index)!;
    const t1 = performance.now();
    const edits = await editRecord(editor, record, weightNorm);
    const t2 = performance.now();
    const post = await evaluatePhase(model, record, { ...phase, reference: pre.localityIds });
    const t3 = performance.now();
    const result = resultOf(index, record, protocol, pre, post, edits, {
      time: (t2 - t1) / 1000,
      evalSeconds: (t3 - t2) / 1000,
      memory: memoryOf(model),
    });
    result.localityPre = pre.localityIds;
    localityPre.set(index, pre.localityIds);
    pres.delete(index);
    await opts.onRecord(result, edits.applied);
    progress("edit", ++n, pending.length, result);
  }
  const doneFinal = opts.doneFinal ?? new Map<number, FinalResult>();
  const todo = sorted.filter((it) => doneFinal.get(it.index)?.editsApplied !== sorted.length);
  if (todo.length) progress("final", 0, todo.length);
  for (const [k, { index, record }] of todo.entries()) {
    const fin = await evaluatePhase(model, record, { ...phase, reference: localityPre.get(index) });
    await opts.onFinal?.({
      index,
      caseId: record.caseId,
      editsApplied: sorted.length,
      final: fin.metrics,
      topK: fin.top,
    });
    progress("final", k + 1, todo.length);
  }
}

function resultOf(
  index: number,
  record: EvalRecord,
  protocol: ProtocolKind,
  pre: PhaseEval,
  post: PhaseEval,
  edits: RecordEdits,
  extra: { time: number; evalSeconds: number; memory: MemoryUse[] },
): RecordResult {
  const r: RecordResult = {
    index,
    caseId: record.caseId,
    format: record.format,
    request: record.request,
    protocol,
    pre: pre.metrics,
    post: post.metrics,
    edits: edits.diagnostics,
    time: extra.time,
    evalSeconds: extra.evalSeconds,
    memory: extra.memory,
    topK: { pre: pre.top, post: post.top },
  };
  if (edits.error !== undefined) r.error = edits.error;
  return r;
}

/**
 * A copy of a result without what varies from run to run (timings, memory) and without the resume
 * bookkeeping (appliedFile): two runs of the same records give equal comparable results.
 */
export function comparableResult(
  r: RecordResult,
): Omit<RecordResult, "time" | "evalSeconds" | "memory" | "appliedFile"> {
  const { time: _t, evalSeconds: _e, memory: _m, appliedFile: _d, ...rest } = r;
  return {
    ...rest,
    edits: r.edits.map((e) => ({ ...e, timings: { ...e.timings, ...ZERO_TIMINGS } })),
  };
}

const ZERO_TIMINGS: EditTimings = { templates: 0, kStar: 0, vStar: 0, solve: 0, update: 0, total: 0 };
