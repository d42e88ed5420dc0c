/**
 * Running keg's CLI as a user does, in a child process, for the CLI tests.
 * @module
 */

/** lib/cli/main.ts. */
export const MAIN: string = new URL("../../lib/cli/main.ts", import.meta.url).pathname;
/** The repository root (the working directory of every run, so relative config paths resolve). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** Runs `keg <args>` (deno run lib/cli/main.ts) from the repository root with extra environment. */
export async function keg(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}
