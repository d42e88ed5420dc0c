/**
 * Token positions ROME reads and writes: the subject's last token (`subject_last`), its first
 * (`subject_first`), or the prompt's last token (`last`), computed on the token level.
 * @module
 */
import type { Tokenizer } from "../model/tokenizer.ts";

/** Where in a prompt the key is read and δ is added. */
export type LookupToken = "subject_last" | "subject_first" | "last";

/** Parses a fact_token value (EasyEdit names). */
export function parseFactToken(v: string, where = "fact_token"): LookupToken {
  if (v === "subject_last" || v === "subject_first" || v === "last") return v;
  if (v === "subject_first_after_last") {
    throw new Error(
      `${where}: "subject_first_after_last" is not supported; use subject_last, subject_first or last`,
    );
  }
  throw new Error(`${where}: expected subject_last, subject_first or last, got ${JSON.stringify(v)}`);
}

/** A prompt with the subject filled in, its ids, and the lookup index. */
export interface LocatedPrompt {
  text: string;
  ids: number[];
  lookup: number;
}

/**
 * Fills `template` (which contains exactly one "{}") with `subject`, tokenizes it and finds the lookup
 * position. `subject_last` = len(enc(prefix + subject)) − 1, as the reference implementations count.
 */
export function locate(
  tok: Tokenizer,
  template: string,
  subject: string,
  factToken: LookupToken,
): LocatedPrompt {
  const at = template.indexOf("{}");
  if (at < 0) throw new Error(`template ${JSON.stringify(template)} has no "{}" for the subject`);
  const prefix = template.slice(0, at);
  const text = prefix + subject + template.slice(at + 2);
  const ids = tok.encode(text);
  let lookup: number;
  if (factToken === "last") {
    lookup = ids.length - 1;
  } else if (factToken === "subject_last") {
    lookup = tok.encode(prefix + subject).length - 1;
  } else {
    // the first subject token follows the prefix's tokens (a trailing space joins the subject's first token)
    lookup = prefix.length ? tok.encode(prefix.replace(/ $/, "")).length : tok.encode("").length;
  }
  if (lookup < 0 || lookup >= ids.length) {
    throw new Error(`lookup position ${lookup} outside the ${ids.length} tokens of ${JSON.stringify(text)}`);
  }
  return { text, ids, lookup };
}
