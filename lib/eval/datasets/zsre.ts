/**
 * ZsRE in MEND's format (as EasyEdit and ROME read it):
 * `{subject, src, pred?, rephrase, alt, answers[], loc ("nq question: …"), loc_ans, cond?}`.
 *
 * Mapping to {@link EvalRecord}, following EasyEdit's `ZsreDataset`:
 * - `caseId` = the record's index in the file (the files carry no id);
 * - `request` = {prompt: `src` with the first occurrence of `subject` replaced by `{}`, subject,
 *   targetNew: `alt`, groundTruth: `answers[0]`};
 * - `rephrasePrompts` = [`rephrase`];
 * - `localityPrompts` = [{prompt: `loc`, groundTruth: `loc_ans`, key: "neighborhood"}] (`loc` kept with its
 *   `nq question: ` prefix, as EasyEdit feeds it; a `loc` without that prefix is an error, as EasyEdit
 *   asserts);
 * - `neighborhoodPrompts`, `attributePrompts`, `generationPrompts`, `portability` = [].
 *
 * Records whose `alt` is exactly `""` are skipped, as EasyEdit skips them (they have no edit target; the
 * shared 750-record sample has one, at index 394, so it loads as 749 records). Any other empty field is an
 * error.
 * @module
 */
import {
  asRecord,
  type EvalRecord,
  fail,
  type RecordContext,
  stringArrayField,
  stringField,
  toTemplate,
} from "./types.ts";

/** True when the first record looks like this format. */
export function looksLikeZsre(first: Record<string, unknown>): boolean {
  return "src" in first && "alt" in first;
}

/** Validates and normalises one ZsRE record; null for a record EasyEdit skips (empty `alt`). */
export function parseZsre(raw: unknown, ctx: RecordContext): EvalRecord | null {
  const r = asRecord(ctx, raw);
  if (r["alt"] === "") return null;
  const subject = stringField(ctx, r, "subject");
  const src = stringField(ctx, r, "src");
  const targetNew = stringField(ctx, r, "alt");
  const answers = stringArrayField(ctx, r, "answers", { nonEmpty: true });
  const rephrase = stringField(ctx, r, "rephrase");
  const loc = stringField(ctx, r, "loc");
  if (!loc.includes("nq question: ")) {
    fail(ctx, "loc", `expected an "nq question: " prompt, got ${JSON.stringify(loc)}`);
  }
  const locAns = stringField(ctx, r, "loc_ans");
  return {
    caseId: ctx.index,
    format: "zsre",
    request: {
      prompt: toTemplate(ctx, src, subject, "src", "subject"),
      subject,
      targetNew,
      groundTruth: answers[0],
    },
    rephrasePrompts: [rephrase],
    localityPrompts: [{ prompt: loc, groundTruth: locAns, key: "neighborhood" }],
    neighborhoodPrompts: [],
    attributePrompts: [],
    generationPrompts: [],
    portability: [],
  };
}
