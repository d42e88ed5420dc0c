/**
 * EasyEdit's (MEND's) flat CounterFact format, one object per edit:
 * `{case_id, prompt, subject, target_new, ground_truth, rephrase_prompt, locality_prompt,
 * locality_ground_truth}` (all strings but `case_id`).
 *
 * Mapping to {@link EvalRecord}:
 * - `caseId` = `case_id` (the record index when absent);
 * - `request` = {prompt: `prompt` with the first occurrence of `subject` replaced by `{}`, subject,
 *   targetNew: `target_new`, groundTruth: `ground_truth`};
 * - `rephrasePrompts` = [`rephrase_prompt`];
 * - `localityPrompts` = [{prompt: `locality_prompt`, groundTruth: `locality_ground_truth`,
 *   key: "neighborhood"}] (the key EasyEdit's examples report: `neighborhood_acc`);
 * - `neighborhoodPrompts` = [`locality_prompt`] when `locality_ground_truth` equals `ground_truth` (the
 *   locality prompts of these files are ROME neighborhood prompts, so ROME's NS applies), else [];
 * - `attributePrompts`, `generationPrompts`, `portability` = [] (EasyEdit's fluency generates from the
 *   request prompt).
 * @module
 */
import { asRecord, type EvalRecord, intField, type RecordContext, stringField, toTemplate } from "./types.ts";

/** True when the first record looks like this format. */
export function looksLikeCounterfactEasyEdit(first: Record<string, unknown>): boolean {
  return "prompt" in first && "target_new" in first && "locality_prompt" in first;
}

/** Validates and normalises one flat CounterFact record. */
export function parseCounterfactEasyEdit(raw: unknown, ctx: RecordContext): EvalRecord {
  const r = asRecord(ctx, raw);
  const caseId = "case_id" in r ? intField(ctx, r, "case_id") : ctx.index;
  const prompt = stringField(ctx, r, "prompt");
  const subject = stringField(ctx, r, "subject");
  const targetNew = stringField(ctx, r, "target_new");
  const groundTruth = stringField(ctx, r, "ground_truth");
  const rephrase = stringField(ctx, r, "rephrase_prompt");
  const locPrompt = stringField(ctx, r, "locality_prompt");
  const locAnswer = stringField(ctx, r, "locality_ground_truth");
  return {
    caseId,
    format: "counterfact-easyedit",
    request: {
      prompt: toTemplate(ctx, prompt, subject, "prompt", "subject"),
      subject,
      targetNew,
      groundTruth,
    },
    rephrasePrompts: [rephrase],
    localityPrompts: [{ prompt: locPrompt, groundTruth: locAnswer, key: "neighborhood" }],
    neighborhoodPrompts: locAnswer === groundTruth ? [locPrompt] : [],
    attributePrompts: [],
    generationPrompts: [],
    portability: [],
  };
}
