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
