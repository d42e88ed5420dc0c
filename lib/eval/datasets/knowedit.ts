/**
 * KnowEdit's JSON (wiki_counterfact, wiki_recent, ZsRE, WikiBio subsets):
 * `{subject, prompt, target_new, ground_truth?, rephrase_prompt? | rephrase?, portability?: {Category:
 * [{prompt, ground_truth}]}, locality?: {Category: [{prompt, ground_truth}]}}`, where a `ground_truth` may be
 * a string, a list of strings or a list of alias lists (`[["Syrian pound", "SYP"]]`). WikiBio's
 * `concept` / `text` / `labels` stand in for `subject` / `prompt` / `target_new`, as in EasyEdit's
 * `KnowEditDataset`.
 *
 * Mapping to {@link EvalRecord}, following EasyEdit's `run_knowedit_llama2.py`:
 * - `caseId` = `case_id` when present, else the record's index;
 * - `request` = {prompt: `prompt` with the first occurrence of `subject` replaced by `{}`, subject,
 *   targetNew: `target_new`, groundTruth: `ground_truth` (first string of nested lists) or null when
 *   absent (wiki_recent inserts new facts)};
 * - `rephrasePrompts` = `rephrase_prompt` or `rephrase` (a string or a list), else [];
 * - `portability` / `localityPrompts` = every {prompt, ground_truth} of every category, with key = the
 *   category name (`Reasoning` is reported as `reasoning`, as EasyEdit's script does); each answer is the
 *   first string of its nested lists; entries whose answer is blank are dropped (as EasyEdit drops them);
 *   a list-valued `prompt` contributes its first element;
 * - `neighborhoodPrompts`, `attributePrompts`, `generationPrompts` = [].
 * @module
 */
import {
  asRecord,
  checkString,
  type EvalRecord,
  fail,
  intField,
  isObject,
  type JsonObject,
  type PromptAnswer,
  type RecordContext,
  stringField,
  toTemplate,
} from "./types.ts";

/** True when the first record looks like this format. */
export function looksLikeKnowEdit(first: Record<string, unknown>): boolean {
  return ("prompt" in first && "target_new" in first && "subject" in first) ||
    ("text" in first && "labels" in first && "concept" in first);
}

/** The first string inside arbitrarily nested lists (EasyEdit: `while isinstance(an, list): an = an[0]`). */
function firstString(ctx: RecordContext, v: unknown, path: string): string {
  let p = path;
  while (Array.isArray(v)) {
    if (v.length === 0) fail(ctx, p, "empty list");
    v = v[0];
    p += "[0]";
  }
  return checkString(ctx, v, p, true);
}

function pick(r: JsonObject, key: string, alt: string): string {
  return key in r ? key : alt;
}

function category(ctx: RecordContext, r: JsonObject, section: "portability" | "locality"): PromptAnswer[] {
  if (!(section in r) || r[section] === null) return [];
  const sec = r[section];
  if (!isObject(sec)) fail(ctx, section, "expected an object of categories");
  const out: PromptAnswer[] = [];
  for (const [name, items] of Object.entries(sec)) {
    const path = `${section}.${name}`;
    if (items === null) continue;
    if (!Array.isArray(items)) fail(ctx, path, "expected an array of {prompt, ground_truth}");
    items.forEach((item, i) => {
      const ip = `${path}[${i}]`;
      if (!isObject(item)) fail(ctx, ip, "expected an object");
      if (!("prompt" in item)) fail(ctx, `${ip}.prompt`, "missing");
      if (!("ground_truth" in item)) fail(ctx, `${ip}.ground_truth`, "missing");
      const prompt = firstString(ctx, item["prompt"], `${ip}.prompt`);
      if (prompt.trim() === "") fail(ctx, `${ip}.prompt`, "empty string");
      const answer = firstString(ctx, item["ground_truth"], `${ip}.ground_truth`);
      if (answer.trim() === "") return;
      out.push({ prompt, groundTruth: answer, key: name === "Reasoning" ? "reasoning" : name });
    });
  }
  return out;
}

/** Validates and normalises one KnowEdit record. */
export function parseKnowEdit(raw: unknown, ctx: RecordContext): EvalRecord {
  const r = asRecord(ctx, raw);
  const caseId = "case_id" in r ? intField(ctx, r, "case_id") : ctx.index;
  const subjectKey = pick(r, "subject", "concept");
  const promptKey = pick(r, "prompt", "text");
  const targetKey = pick(r, "target_new", "labels");
  const subject = stringField(ctx, r, subjectKey);
  const prompt = stringField(ctx, r, promptKey);
  const targetNew = stringField(ctx, r, targetKey);
  let groundTruth: string | null = null;
  if ("ground_truth" in r && r["ground_truth"] !== null) {
    groundTruth = firstString(ctx, r["ground_truth"], "ground_truth");
    if (groundTruth.trim() === "") fail(ctx, "ground_truth", "empty string");
  }
  const rephraseKey = "rephrase_prompt" in r ? "rephrase_prompt" : "rephrase" in r ? "rephrase" : null;
  let rephrasePrompts: string[] = [];
  if (rephraseKey !== null) {
    const v = r[rephraseKey];
    rephrasePrompts = Array.isArray(v)
      ? v.map((s, i) => checkString(ctx, s, `${rephraseKey}[${i}]`))
      : [checkString(ctx, v, rephraseKey)];
  }
  return {
    caseId,
    format: "knowedit",
    request: {
      prompt: toTemplate(ctx, prompt, subject, promptKey, subjectKey),
      subject,
      targetNew,
      groundTruth,
    },
    rephrasePrompts,
    localityPrompts: category(ctx, r, "locality"),
    neighborhoodPrompts: [],
    attributePrompts: [],
    generationPrompts: [],
    portability: category(ctx, r, "portability"),
  };
}
