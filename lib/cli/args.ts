/**
 * Shared command-line parsing (node:util parseArgs) with clear errors.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A usage error: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses `args` against `options`; unknown flags become a UsageError naming the command. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: T,
): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ args, options, allowPositionals: false, strict: true });
    return values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError(`${command}: ${(e as Error).message}`);
  }
}

/** Reads a required string flag. */
export function required(command: string, values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`${command}: --${name} is required`);
  return v;
}

/** Reads a positive integer flag. */
export function intFlag(
  command: string,
  values: Record<string, unknown>,
  name: string,
  fallback: number,
): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new UsageError(`${command}: --${name} expects a whole number, got ${v}`);
  }
  return n;
}

/**
 * Splits `--set k=v,k=[[5,5]],…` on the commas outside brackets, braces and quotes into an overrides object
 * (values as text; lib/edit/hparams.ts reads them as YAML). Usage errors: unbalanced brackets, an unclosed
 * quote, a part without `=` (the usual cause: a list value without its brackets, `layers=5,6`), an empty
 * key or value, a key given twice.
 */
export function parseSet(s: string, command = "eval"): Record<string, string> {
  const err = (m: string) => new UsageError(`${command}: --set: ${m}`);
  const out: Record<string, string> = {};
  let depth = 0, start = 0;
  let quote: string | null = null;
  const parts: string[] = [];
  for (let i = 0; i <= s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (i === s.length) throw err(`unclosed quote ${quote} in ${JSON.stringify(s)}`);
      continue;
    }
    // a quote opens a YAML quoted scalar only where one can start (an apostrophe inside a word is text)
    if ((c === '"' || c === "'") && /^$|[=,[{:]$/.test(s.slice(0, i).trimEnd().slice(-1))) quote = c;
    else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") {
      if (--depth < 0) throw err(`unbalanced "${c}" in ${JSON.stringify(s)}`);
    } else if ((c === "," && depth === 0) || i === s.length) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw err(`unclosed bracket in ${JSON.stringify(s)}`);
  let last: string | null = null;
  for (const kv of parts) {
    if (kv.trim() === "") continue;
    const eq = kv.indexOf("=");
    if (eq < 0 && last !== null) {
      throw err(
        `${JSON.stringify(kv.trim())} after ${last}=… is not a key=value pair: a value with commas needs ` +
          `brackets (e.g. ${last}=[${out[last]},${kv.trim()}]) or quotes`,
      );
    }
    if (eq <= 0) throw new UsageError(`${command}: --set expects key=value pairs, got ${JSON.stringify(kv)}`);
    const key = kv.slice(0, eq).trim(), value = kv.slice(eq + 1).trim();
    if (key === "") throw err(`empty key in ${JSON.stringify(kv)}`);
    if (value === "") throw err(`${key} has no value`);
    if (Object.hasOwn(out, key)) throw err(`${key} is given twice`);
    out[key] = value;
    last = key;
  }
  return out;
}
