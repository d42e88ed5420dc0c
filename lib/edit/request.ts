/**
 * Edit requests: what to rewrite, read from any of the formats editing code uses, plus the plan of the
 * context templates.
 *
 * Accepted record styles (extra fields such as `rephrase_prompt`, `locality_prompt`, `paraphrase_prompts`
 * or `neighborhood_prompts` are ignored here; the evaluation layer reads them):
 *
 * - EasyEdit flat: `{prompt, subject, target_new, ground_truth?, case_id?}`; `prompt` contains the subject
 *   literally ("The mother tongue of Danielle Darrieux is") or `{}` in its place. kmeng01/rome's notebook
 *   form `target_new: {str: "…"}` is accepted as well.
 * - ROME CounterFact: `{case_id, requested_rewrite: {prompt, subject, target_new: {str}, target_true: {str}}}`.
 * - keg camelCase: `{prompt, subject, targetNew, groundTruth?, caseId?}`.
 *
 * A prompt without `{}` gets the FIRST occurrence of the subject replaced by `{}` (EasyEdit's
 * `str.replace` replaces every occurrence, which yields a prompt it cannot format when the subject occurs
 * twice). Errors are {@linkcode RequestError}s naming the record and the field.
 * @module
 */
import type { RomeHparams } from "./hparams.ts";

/** One edit: make the model complete `prompt` (with the subject in place of `{}`) with `targetNew`. */
export interface EditRequest {
  /** The prompt with exactly one `{}` where the subject goes, e.g. "{} plays the sport of". */
  prompt: string;
  /** The subject whose fact is rewritten, e.g. "LeBron James". */
  subject: string;
  /** The new object, as the user wrote it (no leading space added; see {@linkcode targetText}). */
  targetNew: string;
  /** The true object, if known (EasyEdit `ground_truth`, CounterFact `target_true.str`). */
  groundTruth?: string;
  /** The record id (CounterFact / EasyEdit `case_id`), if any. */
  caseId?: number | string;
}

/** A bad edit request: names where it came from (`where`, e.g. `requests.json[3]`) and the field. */
export class RequestError extends Error {
  /** The record's location (file and index, or a label). */
  readonly where: string;
  /** The offending field, when the error is about one. */
  readonly field: string | undefined;
  constructor(where: string, field: string | undefined, message: string) {
    super(field === undefined ? `${where}: ${message}` : `${where}: ${field}: ${message}`);
    this.name = "RequestError";
    this.where = where;
    this.field = field;
  }
}

/**
 * The text whose tokens are the edit target: `" " + targetNew` unless it already starts with a space.
 *
 * The references tokenize the target after the prompt with a leading space (so "Paris" is the word-initial
 * token " Paris", as it follows "… is located in"). kmeng01/rome prepends it when the first character is
 * not a space; EasyEdit's ROME compares the whole string with " " and so always prepends. Both agree for
 * every target that does not already start with a space, which is what keg does.
 */
export function targetText(targetNew: string): string {
  return targetNew.startsWith(" ") ? targetNew : ` ${targetNew}`;
}

/** The prompt with the subject in place of `{}`. */
export function promptText(request: EditRequest): string {
  return request.prompt.replace("{}", () => request.subject);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  return String(v);
}

/** Picks the one present field among aliases; two present at once is an error. */
function pick(rec: Record<string, unknown>, where: string, names: string[]): [string, unknown] | undefined {
  const present = names.filter((n) => rec[n] !== undefined);
  if (present.length > 1) {
    throw new RequestError(where, present[0], `given twice (as ${present.join(" and ")})`);
  }
  return present.length ? [present[0], rec[present[0]]] : undefined;
}

/** A required non-empty string. */
function text(where: string, field: string, v: unknown): string {
  if (typeof v !== "string") throw new RequestError(where, field, `expected a string, got ${describe(v)}`);
  if (v.trim() === "") throw new RequestError(where, field, "is empty");
  return v;
}

/** A target: a string or `{str: string}` (the CounterFact form). */
function target(where: string, field: string, v: unknown): string {
  if (isRecord(v)) {
    if (!("str" in v)) {
      throw new RequestError(where, field, `expected a string or {str: …}, got ${describe(v)}`);
    }
    return text(where, `${field}.str`, v.str);
  }
  return text(where, field, v);
}

function caseIdOf(where: string, field: string, v: unknown): number | string {
  if ((typeof v === "number" && Number.isFinite(v)) || typeof v === "string") return v;
  throw new RequestError(where, field, `expected a number or a string, got ${describe(v)}`);
}

/**
 * Normalizes one request record (EasyEdit flat, ROME CounterFact or keg camelCase; see the module doc).
 * `where` labels the record in errors. Errors: a non-object record, a missing or non-string field, an empty
 * subject or target, a prompt with more than one `{}`, a subject that does not occur in a prompt without
 * `{}`.
 */
export function normalizeRequest(raw: unknown, where: string): EditRequest {
  if (!isRecord(raw)) {
    throw new RequestError(where, undefined, `expected an edit request object, got ${describe(raw)}`);
  }
  let rec = raw;
  let prefix = "";
  let caseId: number | string | undefined;
  const id = pick(raw, where, ["case_id", "caseId"]);
  if (id) caseId = caseIdOf(where, id[0], id[1]);
  if (raw.requested_rewrite !== undefined) {
    if (!isRecord(raw.requested_rewrite)) {
      throw new RequestError(
        where,
        "requested_rewrite",
        `expected an object, got ${describe(raw.requested_rewrite)}`,
      );
    }
    rec = raw.requested_rewrite;
    prefix = "requested_rewrite.";
  }
  const field = (names: string[], required: boolean): [string, unknown] | undefined => {
    const got = pick(rec, where, names);
    if (!got && required) throw new RequestError(where, prefix + names[0], "missing");
    return got ? [prefix + got[0], got[1]] : undefined;
  };
  const [pName, pVal] = field(["prompt"], true)!;
  const [sName, sVal] = field(["subject"], true)!;
  const [tName, tVal] = field(["target_new", "targetNew"], true)!;
  const truth = field(["target_true", "ground_truth", "groundTruth"], false);

  let prompt = text(where, pName, pVal);
  const subject = text(where, sName, sVal);
  const targetNew = target(where, tName, tVal);
  const groundTruth = truth ? target(where, truth[0], truth[1]) : undefined;

  const holes = prompt.split("{}").length - 1;
  if (holes > 1) {
    throw new RequestError(
      where,
      pName,
      `has ${holes} "{}" placeholders, expected one: ${JSON.stringify(prompt)}`,
    );
  }
  if (holes === 0) {
    const at = prompt.indexOf(subject);
    if (at < 0) {
      throw new RequestError(
        where,
        pName,
        `the subject ${JSON.stringify(subject)} does not occur in ${
          JSON.stringify(prompt)
        } (and there is no "{}")`,
      );
    }
    prompt = prompt.slice(0, at) + "{}" + prompt.slice(at + subject.length);
  }
  const out: EditRequest = { prompt, subject, targetNew };
  if (groundTruth !== undefined) out.groundTruth = groundTruth;
  if (caseId !== undefined) out.caseId = caseId;
  return out;
}

/**
 * Reads edit requests from a JSON file holding an array (or a single object) of records, or from JSON Lines
 * (one record per non-empty line); records may be of any accepted style. Errors name the file and the
 * record: `requests.json[3]` for arrays, `requests.jsonl:4` (line number) for JSON Lines.
 */
export async function loadRequests(path: string): Promise<EditRequest[]> {
  let body: string;
  try {
    body = await Deno.readTextFile(path);
  } catch (e) {
    throw new RequestError(path, undefined, `cannot read: ${(e as Error).message}`);
  }
  return parseRequests(body, path);
}

/** Parses the text of a requests file (see {@linkcode loadRequests}); `source` names it in errors. */
export function parseRequests(body: string, source: string): EditRequest[] {
  const trimmed = body.trim();
  if (trimmed === "") throw new RequestError(source, undefined, "no requests (empty file)");
  if (trimmed.startsWith("[")) {
    let data: unknown;
    try {
      data = JSON.parse(trimmed);
    } catch (e) {
      throw new RequestError(source, undefined, `invalid JSON: ${(e as Error).message}`);
    }
    const list = data as unknown[];
    if (list.length === 0) throw new RequestError(source, undefined, "no requests (empty array)");
    return list.map((r, i) => normalizeRequest(r, `${source}[${i}]`));
  }
  // JSON Lines, or one (possibly pretty-printed) JSON object.
  const lines = body.split("\n");
  const out: EditRequest[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      if (out.length === 0) {
        try {
          return [normalizeRequest(JSON.parse(trimmed), source)];
        } catch (e2) {
          if (e2 instanceof RequestError) throw e2;
        }
      }
      throw new RequestError(`${source}:${i + 1}`, undefined, `invalid JSON: ${(e as Error).message}`);
    }
    out.push(normalizeRequest(rec, `${source}:${i + 1}`));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Context templates

/**
 * The words the references start each sampled context template with (EasyEdit and rebuilding-rome; the
 * count of each `[length, count]` entry is split evenly over them, `⌊count / 5⌋` per word).
 */
export const CONTEXT_TEMPLATE_SEEDS: readonly string[] = ["The", "Therefore", "Because", "I", "You"];

/**
 * The context-template plan, `[[length, count], …]` from `context_template_length_params`: for each
 * entry, `count` prefixes of `length` tokens (seed word included) are sampled from the unedited model
 * (later, on the GPU), each turned into `"<text>. {}"`; the bare `"{}"` comes first. `[[5, 10], [10, 10]]`
 * gives 1 + 10 + 10 = 21 templates (see {@linkcode contextTemplateCount}).
 */
export function contextTemplateSpec(
  hp: Pick<RomeHparams, "contextTemplateLengthParams">,
): [number, number][] {
  return hp.contextTemplateLengthParams.map(([length, count]) => [length, count]);
}

/**
 * How many templates a plan yields, `"{}"` included: 1 + Σ 5·⌊count / 5⌋ (the references sample
 * ⌊count / 5⌋ per seed word, so a count that is not a multiple of 5 is rounded down).
 */
export function contextTemplateCount(spec: readonly (readonly [number, number])[]): number {
  const seeds = CONTEXT_TEMPLATE_SEEDS.length;
  return 1 + spec.reduce((n, [, count]) => n + seeds * Math.floor(count / seeds), 0);
}
