/**
 * MQuAKE's format (MQuAKE-CF / -T / -hard):
 * `{case_id, requested_rewrite: [{prompt ("{}" template), subject, target_new: {str}, target_true: {str},
 * question?, relation_id?}, …], questions[], answer, answer_alias[], new_answer, new_answer_alias[],
 * single_hops?: [{question, cloze, answer, answer_alias[]}], new_single_hops?: […], orig?}`.
 *
 * Mapping to {@link EvalRecord}:
 * - `caseId` = `case_id` (MQuAKE's own numbering, not CounterFact ids);
 * - `request` = the first rewrite; `multiHop.requests` = all rewrites in order (apply all to edit the case);
 * - `rephrasePrompts` = [`requested_rewrite[0].question`] when present (EasyEdit's MQuAKE loader uses the
 *   rewrite questions as rephrases), else [];
 * - `portability` = each of `questions` with groundTruth `new_answer`, key "multi_hop" (EasyEdit's MQuAKE
 *   portability);
 * - `multiHop` = {questions, answer, answerAliases: `answer_alias`, newAnswer: `new_answer`,
 *   newAnswerAliases: `new_answer_alias`, requests, singleHops, newSingleHops};
 * - `localityPrompts`, `neighborhoodPrompts`, `attributePrompts`, `generationPrompts` = [].
 * @module
 */
import { parseRomeRewrite } from "./counterfact_rome.ts";
import {
  asRecord,
  checkString,
  type EvalRecord,
  fail,
  type Hop,
  intField,
  isObject,
  type JsonObject,
  type RecordContext,
  stringArrayField,
  stringField,
} from "./types.ts";

/** True when the first record looks like this format. */
export function looksLikeMquake(first: Record<string, unknown>): boolean {
  return Array.isArray(first["requested_rewrite"]);
}

function hops(ctx: RecordContext, r: JsonObject, key: string): Hop[] {
  if (!(key in r)) return [];
  const v = r[key];
  if (!Array.isArray(v)) fail(ctx, key, "expected an array of hops");
  return v.map((h, i) => {
    const path = `${key}[${i}]`;
    if (!isObject(h)) fail(ctx, path, "expected an object");
    return {
      question: stringField(ctx, h, "question", `${path}.question`),
      cloze: stringField(ctx, h, "cloze", `${path}.cloze`),
      answer: stringField(ctx, h, "answer", `${path}.answer`),
      answerAliases: stringArrayField(ctx, h, "answer_alias", { path: `${path}.answer_alias` }),
    };
  });
}

/** Validates and normalises one MQuAKE record. */
export function parseMquake(raw: unknown, ctx: RecordContext): EvalRecord {
  const r = asRecord(ctx, raw);
  const caseId = "case_id" in r ? intField(ctx, r, "case_id") : ctx.index;
  const rewrites = r["requested_rewrite"];
  if (!Array.isArray(rewrites)) fail(ctx, "requested_rewrite", "expected an array of rewrites");
  if (rewrites.length === 0) fail(ctx, "requested_rewrite", "empty array");
  const requests = rewrites.map((rw, i) => {
    const path = `requested_rewrite[${i}]`;
    if (!isObject(rw)) fail(ctx, path, "expected an object");
    return parseRomeRewrite(ctx, rw, path);
  });
  const first = rewrites[0] as JsonObject;
  const rephrase = "question" in first
    ? [checkString(ctx, first["question"], "requested_rewrite[0].question")]
    : [];
  const questions = stringArrayField(ctx, r, "questions", { nonEmpty: true });
  const answer = stringField(ctx, r, "answer");
  const answerAliases = stringArrayField(ctx, r, "answer_alias");
  const newAnswer = stringField(ctx, r, "new_answer");
  const newAnswerAliases = stringArrayField(ctx, r, "new_answer_alias");
  return {
    caseId,
    format: "mquake",
    request: requests[0],
    rephrasePrompts: rephrase,
    localityPrompts: [],
    neighborhoodPrompts: [],
    attributePrompts: [],
    generationPrompts: [],
    portability: questions.map((prompt) => ({ prompt, groundTruth: newAnswer, key: "multi_hop" })),
    multiHop: {
      questions,
      answer,
      answerAliases,
      newAnswer,
      newAnswerAliases,
      requests,
      singleHops: hops(ctx, r, "single_hops"),
      newSingleHops: hops(ctx, r, "new_single_hops"),
    },
  };
}
