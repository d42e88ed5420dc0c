/**
 * The one record type keg evaluates ({@link EvalRecord}), the error every loader throws on the first bad
 * record ({@link DatasetError}), and the small validators the per-format loaders share.
 * @module
 */

/** The dataset formats keg reads. */
export type DatasetFormat =
  | "counterfact-easyedit"
  | "counterfact-rome"
  | "zsre"
  | "mquake"
  | "knowedit";

/** Every format name, in auto-detection order. */
export const DATASET_FORMATS: readonly DatasetFormat[] = [
  "counterfact-rome",
  "mquake",
  "zsre",
  "counterfact-easyedit",
  "knowedit",
];

/**
 * One rewrite request, in ROME's form: `prompt` is a template with exactly one `{}` where the subject goes
 * (`fillTemplate(prompt, subject)` is the original sentence). Targets are kept as the file spells them
 * (no leading space is added: the editor and the metrics join prompt and target with one space, as
 * EasyEdit and ROME do).
 */
export interface RecordRequest {
  /** Template with exactly one `{}`, e.g. `"The mother tongue of {} is"`. */
  prompt: string;
  /** The subject that fills `{}`, e.g. `"Danielle Darrieux"`. */
  subject: string;
  /** The new object the edit writes, e.g. `"English"` (never empty). */
  targetNew: string;
  /** The true object before the edit, e.g. `"French"`; null where the file has none (KnowEdit's
   * recent-knowledge subsets insert new facts and carry no ground truth). */
  groundTruth: string | null;
}

/** A prompt with the answer it should keep (locality) or newly entail (portability). */
export interface PromptAnswer {
  /** The full prompt (no `{}`), e.g. `"Michel Rocard is a native speaker of"`. */
  prompt: string;
  /** The expected answer, e.g. `"French"`. */
  groundTruth: string;
  /**
   * The EasyEdit key the result is reported under (`<key>_acc`): `"neighborhood"` for the flat
   * CounterFact, ROME CounterFact and ZsRE files, KnowEdit's own category names
   * (`"Relation_Specificity"`, `"Forgetfulness"`, `"Subject_Aliasing"`, `"Reasoning"`,
   * `"Logical_Generalization"`), `"multi_hop"` for MQuAKE's questions.
   */
  key: string;
}

/** One hop of an MQuAKE fact chain (`single_hops` / `new_single_hops`). */
export interface Hop {
  /** The hop as a question, e.g. `"Who performed Hey Jude?"`. */
  question: string;
  /** The hop as a cloze prompt, e.g. `"Hey Jude was performed by"`. */
  cloze: string;
  /** Its answer. */
  answer: string;
  /** Other names of the answer. */
  answerAliases: string[];
}

/** MQuAKE's multi-hop part of a record. */
export interface MultiHop {
  /** Paraphrases of the one multi-hop question (MQuAKE has three). */
  questions: string[];
  /** The answer before the edits. */
  answer: string;
  /** Other names of `answer`. */
  answerAliases: string[];
  /** The answer the edits entail. */
  newAnswer: string;
  /** Other names of `newAnswer`. */
  newAnswerAliases: string[];
  /** Every rewrite of the case, in file order (`request` of the record is `requests[0]`). */
  requests: RecordRequest[];
  /** The original fact chain, hop by hop (empty when the file has none). */
  singleHops: Hop[];
  /** The edited fact chain, hop by hop (empty when the file has none). */
  newSingleHops: Hop[];
}

/** The normalised record keg evaluates, whatever file it came from (see each loader for its mapping). */
export interface EvalRecord {
  /** The case id: CounterFact/MQuAKE `case_id`, else the record's index in the file. */
  caseId: number;
  /** The format the record was read from. */
  format: DatasetFormat;
  /** The edit to apply. */
  request: RecordRequest;
  /** Paraphrases of the request prompt, evaluated with `targetNew` (EasyEdit rephrase_acc, ROME PS/PM). */
  rephrasePrompts: string[];
  /** Unrelated prompts whose answers must not change (EasyEdit locality: pre vs post argmax agreement). */
  localityPrompts: PromptAnswer[];
  /**
   * Prompts about other subjects whose true answer is `request.groundTruth` (ROME NS/NM compare
   * P(groundTruth) against P(targetNew) on them).
   */
  neighborhoodPrompts: string[];
  /** Prompts about subjects that already have `targetNew` as their object (ROME's attribute prompts). */
  attributePrompts: string[];
  /** Prefixes for generation (ROME GE / fluency). Empty where the format has none: EasyEdit's fluency
   * then generates from the request prompt. */
  generationPrompts: string[];
  /** Prompts whose answer should follow from the edit (EasyEdit portability_acc). */
  portability: PromptAnswer[];
  /** MQuAKE only. */
  multiHop?: MultiHop;
}

/**
 * A malformed dataset: names the file, the record index (null for a file-level problem) and the field
 * path (e.g. `requested_rewrite.target_new.str`, `paraphrase_prompts[3]`) of the first bad record.
 */
export class DatasetError extends Error {
  /** The file (as given to the loader). */
  readonly file: string;
  /** Index of the record in the file's top-level array, or null when the file itself is wrong. */
  readonly index: number | null;
  /** The offending field path, or null when the whole record is wrong. */
  readonly field: string | null;
  /** What is wrong, without the location. */
  readonly reason: string;
  /** Builds the message `<file>: record <index>, field "<field>": <reason>`. */
  constructor(file: string, index: number | null, field: string | null, reason: string) {
    const where = index === null ? "" : ` record ${index}${field === null ? "" : `, field "${field}"`}`;
    super(`${file}:${where}${where ? ":" : ""} ${reason}`);
    this.name = "DatasetError";
    this.file = file;
    this.index = index;
    this.field = field;
    this.reason = reason;
  }
}

/** Where a record sits: used by the validators to build a {@link DatasetError}. */
export interface RecordContext {
  /** The file name. */
  file: string;
  /** The record's index in the top-level array. */
  index: number;
}

/** A plain JSON object (not an array, not null). */
export type JsonObject = Record<string, unknown>;

/** Throws a {@link DatasetError} for `field` of the record at `ctx`. */
export function fail(ctx: RecordContext, field: string | null, reason: string): never {
  throw new DatasetError(ctx.file, ctx.index, field, reason);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** True for a plain JSON object. */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The record itself as an object, or an error naming the index. */
export function asRecord(ctx: RecordContext, v: unknown): JsonObject {
  if (!isObject(v)) fail(ctx, null, `expected an object, got ${describe(v)}`);
  return v;
}

/** `obj[key]` as an object; `path` names it in errors. */
export function objectField(ctx: RecordContext, obj: JsonObject, key: string, path = key): JsonObject {
  if (!(key in obj)) fail(ctx, path, "missing");
  const v = obj[key];
  if (!isObject(v)) fail(ctx, path, `expected an object, got ${describe(v)}`);
  return v;
}

/** `obj[key]` as a string; non-empty (after trimming) unless `allowEmpty`. */
export function stringField(
  ctx: RecordContext,
  obj: JsonObject,
  key: string,
  path = key,
  allowEmpty = false,
): string {
  if (!(key in obj)) fail(ctx, path, "missing");
  return checkString(ctx, obj[key], path, allowEmpty);
}

/** A value that must be a string; non-empty (after trimming) unless `allowEmpty`. */
export function checkString(ctx: RecordContext, v: unknown, path: string, allowEmpty = false): string {
  if (typeof v !== "string") fail(ctx, path, `expected a string, got ${describe(v)}`);
  if (!allowEmpty && v.trim() === "") fail(ctx, path, "empty string");
  return v;
}

/** `obj[key]` as an array of non-empty strings (the array itself may be empty unless `nonEmpty`). */
export function stringArrayField(
  ctx: RecordContext,
  obj: JsonObject,
  key: string,
  opts: { path?: string; nonEmpty?: boolean; allowEmptyStrings?: boolean } = {},
): string[] {
  const path = opts.path ?? key;
  if (!(key in obj)) fail(ctx, path, "missing");
  const v = obj[key];
  if (!Array.isArray(v)) fail(ctx, path, `expected an array of strings, got ${describe(v)}`);
  if (opts.nonEmpty && v.length === 0) fail(ctx, path, "empty array");
  return v.map((s, i) => checkString(ctx, s, `${path}[${i}]`, opts.allowEmptyStrings));
}

/** `obj[key]` as an array of strings when present, else `[]`. */
export function optionalStringArray(ctx: RecordContext, obj: JsonObject, key: string, path = key): string[] {
  return key in obj ? stringArrayField(ctx, obj, key, { path }) : [];
}

/** `obj[key]` as a non-negative integer. */
export function intField(ctx: RecordContext, obj: JsonObject, key: string, path = key): number {
  if (!(key in obj)) fail(ctx, path, "missing");
  const v = obj[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    fail(ctx, path, `expected a non-negative integer, got ${typeof v === "number" ? v : describe(v)}`);
  }
  return v;
}

/**
 * Turns a full prompt into ROME's template: the first occurrence of `subject` becomes `{}` (so the template
 * filled with the subject gives back the prompt exactly). A prompt that already holds `{}` is taken as the
 * template; it must hold exactly one. Errors name `subjectPath` when the subject does not occur.
 */
export function toTemplate(
  ctx: RecordContext,
  prompt: string,
  subject: string,
  promptPath: string,
  subjectPath: string,
): string {
  const holes = prompt.split("{}").length - 1;
  if (holes > 1) fail(ctx, promptPath, `template has ${holes} "{}" placeholders, expected one`);
  if (holes === 1) return prompt;
  const at = prompt.indexOf(subject);
  if (at < 0) {
    fail(
      ctx,
      subjectPath,
      `subject ${JSON.stringify(subject)} does not occur in the prompt ${JSON.stringify(prompt)}`,
    );
  }
  return prompt.slice(0, at) + "{}" + prompt.slice(at + subject.length);
}

/**
 * Fills a template's `{}` with the subject. Use this rather than `template.replace("{}", subject)`, which
 * reads `$$`, `$&`… in the subject as replacement patterns (CounterFact has a subject "Joey BadA$$").
 */
export function fillTemplate(template: string, subject: string): string {
  const at = template.indexOf("{}");
  if (at < 0) throw new RangeError(`template ${JSON.stringify(template)} has no "{}"`);
  return template.slice(0, at) + subject + template.slice(at + 2);
}

/** Checks that a ROME template holds exactly one `{}`. */
export function checkTemplate(ctx: RecordContext, template: string, path: string): string {
  const holes = template.split("{}").length - 1;
  if (holes !== 1) fail(ctx, path, `template must hold exactly one "{}", found ${holes}`);
  return template;
}
