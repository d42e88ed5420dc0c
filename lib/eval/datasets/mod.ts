/**
 * Knowledge-editing dataset loaders: EasyEdit flat CounterFact, ROME CounterFact, ZsRE (MEND format),
 * MQuAKE and KnowEdit, all normalised to one {@link EvalRecord}. Each loader validates every record it
 * returns and throws a {@link DatasetError} naming the file, record index and field of the first bad one;
 * nothing is returned when any record is bad.
 *
 * ```ts
 * const records = await loadDataset("../shared/data/datasets/counterfact-rome/counterfact.json", { limit: 20 });
 * ```
 * @module
 */
import { looksLikeCounterfactEasyEdit, parseCounterfactEasyEdit } from "./counterfact_easyedit.ts";
import { looksLikeCounterfactRome, parseCounterfactRome } from "./counterfact_rome.ts";
import { looksLikeKnowEdit, parseKnowEdit } from "./knowedit.ts";
import { looksLikeMquake, parseMquake } from "./mquake.ts";
import {
  DATASET_FORMATS,
  DatasetError,
  type DatasetFormat,
  type EvalRecord,
  isObject,
  type RecordContext,
} from "./types.ts";
import { looksLikeZsre, parseZsre } from "./zsre.ts";

export * from "./types.ts";
export { parseCounterfactEasyEdit } from "./counterfact_easyedit.ts";
export { parseCounterfactRome, parseRomeRewrite } from "./counterfact_rome.ts";
export { parseKnowEdit } from "./knowedit.ts";
export { parseMquake } from "./mquake.ts";
export { parseZsre } from "./zsre.ts";

/** Options of {@link loadDataset} and {@link parseDataset}. */
export interface LoadOptions {
  /** The file's format; "auto" (default) detects it from the first record. */
  format?: DatasetFormat | "auto";
  /**
   * Return at most this many records (the first ones, after the records a format skips, as EasyEdit's
   * `size`). Records past the limit are not validated.
   */
  limit?: number;
}

type Parser = (raw: unknown, ctx: RecordContext) => EvalRecord | null;

const PARSERS: Record<DatasetFormat, Parser> = {
  "counterfact-easyedit": parseCounterfactEasyEdit,
  "counterfact-rome": parseCounterfactRome,
  "zsre": parseZsre,
  "mquake": parseMquake,
  "knowedit": parseKnowEdit,
};

const DETECTORS: Record<DatasetFormat, (first: Record<string, unknown>) => boolean> = {
  "counterfact-rome": looksLikeCounterfactRome,
  "mquake": looksLikeMquake,
  "zsre": looksLikeZsre,
  "counterfact-easyedit": looksLikeCounterfactEasyEdit,
  "knowedit": looksLikeKnowEdit,
};

/**
 * Detects the format from the first record's keys: `requested_rewrite` as an object → ROME CounterFact,
 * as an array → MQuAKE; `src` + `alt` → ZsRE; `prompt` + `target_new` + `locality_prompt` → EasyEdit
 * flat CounterFact; `prompt` + `target_new` + `subject` (or WikiBio's `text` + `labels` + `concept`) →
 * KnowEdit. Throws a {@link DatasetError} for anything else (ROME's known_1000 causal-tracing set is
 * named as such).
 */
export function detectFormat(data: unknown, file = "<data>"): DatasetFormat {
  if (!Array.isArray(data)) {
    throw new DatasetError(file, null, null, "expected a JSON array of records at the top level");
  }
  if (data.length === 0) throw new DatasetError(file, null, null, "no records: cannot detect the format");
  const first = data[0];
  if (!isObject(first)) throw new DatasetError(file, 0, null, "expected an object");
  for (const f of DATASET_FORMATS) if (DETECTORS[f](first)) return f;
  if ("known_id" in first && "template" in first) {
    throw new DatasetError(
      file,
      0,
      null,
      "this is ROME's known_1000 causal-tracing set (known_id, template, prediction), not an edit dataset",
    );
  }
  throw new DatasetError(
    file,
    0,
    null,
    `unknown dataset format (keys: ${Object.keys(first).join(", ")}); expected one of ${
      DATASET_FORMATS.join(", ")
    }`,
  );
}

/**
 * Validates and normalises already-parsed JSON (the top-level array of a dataset file). `file` only names
 * the source in errors.
 */
export function parseDataset(data: unknown, file = "<data>", opts: LoadOptions = {}): EvalRecord[] {
  const format = !opts.format || opts.format === "auto" ? detectFormat(data, file) : opts.format;
  if (!(format in PARSERS)) {
    throw new DatasetError(file, null, null, `unknown format ${JSON.stringify(format)}`);
  }
  if (!Array.isArray(data)) {
    throw new DatasetError(file, null, null, "expected a JSON array of records at the top level");
  }
  const limit = opts.limit ?? Infinity;
  if (!(limit >= 0)) throw new RangeError(`limit must be ≥ 0, got ${opts.limit}`);
  const parse = PARSERS[format];
  const out: EvalRecord[] = [];
  for (let index = 0; index < data.length && out.length < limit; index++) {
    const rec = parse(data[index], { file, index });
    if (rec !== null) out.push(rec);
  }
  return out;
}

/**
 * Reads a dataset file (a JSON array) and returns its records normalised. Throws a {@link DatasetError}
 * for unreadable or invalid JSON and for the first bad record (file, index, field); returns nothing partial.
 */
export async function loadDataset(path: string, opts: LoadOptions = {}): Promise<EvalRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new DatasetError(path, null, null, `cannot read: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new DatasetError(path, null, null, `invalid JSON: ${(e as Error).message}`);
  }
  return parseDataset(data, path, opts);
}
