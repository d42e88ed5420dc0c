/**
 * ROME's (and MEMIT's) CounterFact format:
 * `{case_id, pararel_idx?, requested_rewrite: {prompt (template with "{}"), relation_id?, subject,
 * target_new: {str, id?}, target_true: {str, id?}}, paraphrase_prompts[], neighborhood_prompts[],
 * attribute_prompts[]?, generation_prompts[]?}`.
 *
 * Mapping to {@link EvalRecord}:
 * - `caseId` = `case_id`;
 * - `request` = {prompt: `requested_rewrite.prompt` (must hold exactly one `{}`), subject,
 *   targetNew: `target_new.str`, groundTruth: `target_true.str`};
 * - `rephrasePrompts` = `paraphrase_prompts`;
 * - `neighborhoodPrompts` = `neighborhood_prompts`;
 * - `localityPrompts` = each neighborhood prompt with groundTruth `target_true.str`, key "neighborhood"
 *   (how EasyEdit's flat CounterFact was built from this file);
 * - `attributePrompts` = `attribute_prompts`, `generationPrompts` = `generation_prompts` (each [] when
 *   absent); `portability` = [].
 * @module
 */
import {
  asRecord,
  checkTemplate,
  type EvalRecord,
  intField,
  type JsonObject,
  objectField,
  optionalStringArray,
  type RecordContext,
  type RecordRequest,
  stringArrayField,
  stringField,
} from "./types.ts";

/** True when the first record looks like this format. */
export function looksLikeCounterfactRome(first: Record<string, unknown>): boolean {
  const rw = first["requested_rewrite"];
  return typeof rw === "object" && rw !== null && !Array.isArray(rw);
}

/**
 * Validates one ROME-style rewrite (`{prompt, subject, target_new: {str}, target_true: {str}}`) at `path`
 * and returns it as an {@link RecordRequest}. Shared with the MQuAKE loader.
 */
export function parseRomeRewrite(ctx: RecordContext, rw: JsonObject, path: string): RecordRequest {
  const prompt = checkTemplate(ctx, stringField(ctx, rw, "prompt", `${path}.prompt`), `${path}.prompt`);
  const subject = stringField(ctx, rw, "subject", `${path}.subject`);
  const targetNew = stringField(
    ctx,
    objectField(ctx, rw, "target_new", `${path}.target_new`),
    "str",
    `${path}.target_new.str`,
  );
  const groundTruth = stringField(
    ctx,
    objectField(ctx, rw, "target_true", `${path}.target_true`),
    "str",
    `${path}.target_true.str`,
  );
  return { prompt, subject, targetNew, groundTruth };
}

/** Validates and normalises one ROME CounterFact record. */
export function parseCounterfactRome(raw: unknown, ctx: RecordContext): EvalRecord {
  const r = asRecord(ctx, raw);
  const caseId = intField(ctx, r, "case_id");
  const request = parseRomeRewrite(ctx, objectField(ctx, r, "requested_rewrite"), "requested_rewrite");
  const paraphrase = stringArrayField(ctx, r, "paraphrase_prompts");
  const neighborhood = stringArrayField(ctx, r, "neighborhood_prompts");
  const attribute = optionalStringArray(ctx, r, "attribute_prompts");
  const generation = optionalStringArray(ctx, r, "generation_prompts");
  const truth = request.groundTruth as string;
  return {
    caseId,
    format: "counterfact-rome",
    request,
    rephrasePrompts: paraphrase,
    localityPrompts: neighborhood.map((prompt) => ({ prompt, groundTruth: truth, key: "neighborhood" })),
    neighborhoodPrompts: neighborhood,
    attributePrompts: attribute,
    generationPrompts: generation,
    portability: [],
  };
}
