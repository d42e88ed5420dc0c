/**
 * keg's test runner (`./keg test`): every test file runs in its own `deno test` process, `--jobs` of them at
 * a time (default: the CPU count), after one `deno check` of them all, and their results are summed up at
 * the end.
 *
 * Why not `deno test --parallel`: that runs the files on threads of one process, each thread with its own
 * WebGPU instance and driver devices, side by side — a configuration keg itself never runs in (the CLI has
 * one runtime per process). CI once aborted with glibc heap corruption at the exit of that one process after
 * every test had passed, with nothing to say which file was involved. One process per file keeps the files
 * apart (environment variables included) and names the file whose process fails or crashes.
 *
 * Usage: `deno run -A scripts/test.ts [--jobs N] [FILE_OR_DIR …]` (default `tests/`).
 * @module
 */
import { parseArgs } from "node:util";

/** What one file's process gave. */
export interface FileResult {
  file: string;
  /** The process's exit code; null when a signal ended it. */
  code: number | null;
  signal: string | null;
  passed: number;
  failed: number;
  seconds: number;
  output: string;
}

// deno's closing line: "ok | 14 passed (56 steps) | 0 failed (6s)" or "FAILED | 0 passed | 1 failed (2ms)"
const SUMMARY = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/m;
// deno's ANSI colour codes
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** The `*_test.ts` files under the given files and folders, sorted. */
export async function testFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    const st = await Deno.stat(p);
    if (st.isFile) {
      out.push(p);
      return;
    }
    for await (const e of Deno.readDir(p)) {
      const q = `${p.replace(/\/$/, "")}/${e.name}`;
      if (e.isDirectory) await walk(q);
      else if (e.isFile && e.name.endsWith("_test.ts")) out.push(q);
    }
  };
  for (const p of paths) await walk(p);
  return [...new Set(out)].sort();
}

/** Runs one test file in its own process and collects its output in arrival order. */
export async function runFile(file: string, signal?: AbortSignal): Promise<FileResult> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", file], // type-checked once by typeCheck
    stdout: "piped",
    stderr: "piped",
    signal,
  }).spawn();
  const chunks: string[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) chunks.push(c);
  };
  const [status] = await Promise.all([child.status, pump(child.stdout), pump(child.stderr)]);
  const output = chunks.join("");
  const m = output.replace(ANSI, "").match(SUMMARY);
  return {
    file,
    code: status.signal ? null : status.code,
    signal: status.signal,
    passed: m ? Number(m[1]) : 0,
    failed: m ? Number(m[2]) : 0,
    seconds: (performance.now() - t0) / 1000,
    output,
  };
}

/** Type-checks all files in one `deno check` (so that each file's process need not check its graph again). */
export async function typeCheck(files: string[]): Promise<boolean> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["check", ...files],
    stdout: "inherit",
    stderr: "inherit",
  })
    .output();
  return r.success;
}

/** Whether a file's process failed: a failed test, a nonzero exit or a signal (a crash after passing). */
export function fileFailed(r: FileResult): boolean {
  return r.failed > 0 || r.code !== 0;
}

/** One line for a file's result. */
export function fileLine(r: FileResult): string {
  const how = r.signal
    ? `killed by ${r.signal}`
    : r.code !== 0 && r.failed === 0
    ? `exit code ${r.code}${r.code === 134 ? " (aborted: SIGABRT)" : ""} with no failed test`
    : `${r.passed} passed, ${r.failed} failed`;
  return `${fileFailed(r) ? "FAILED" : "ok"} ${r.file}: ${how} (${r.seconds.toFixed(1)} s)`;
}

/** Prints a file's output and its result line (the default of {@link runAll}'s `onResult`). */
export async function printResult(r: FileResult): Promise<void> {
  await Deno.stdout.write(new TextEncoder().encode(`${r.output.trimEnd()}\n${fileLine(r)}\n\n`));
}

/** Runs the files `jobs` at a time, handing each result to `onResult` as it finishes; returns all results. */
export async function runAll(
  files: string[],
  jobs: number,
  opts: { signal?: AbortSignal; onResult?: (r: FileResult) => Promise<void> } = {},
): Promise<FileResult[]> {
  const { signal, onResult = printResult } = opts;
  const results: FileResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length && !signal?.aborted) {
      const r = await runFile(files[next++], signal);
      results.push(r);
      await onResult(r);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, files.length)) }, worker));
  return results;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { jobs: { type: "string" } },
    allowPositionals: true,
  });
  const jobs = Number(values.jobs ?? Deno.env.get("DENO_JOBS") ?? navigator.hardwareConcurrency);
  if (!Number.isInteger(jobs) || jobs < 1) {
    console.error(`scripts/test.ts: --jobs must be a positive integer, got ${values.jobs}`);
    return 2;
  }
  const files = await testFiles(positionals.length ? positionals : ["tests/"]);
  if (!files.length) {
    console.error(`scripts/test.ts: no *_test.ts files under ${positionals.join(" ") || "tests/"}`);
    return 2;
  }
  const t0 = performance.now();
  if (!await typeCheck(files)) {
    console.log("FAILED | type check (deno check) of the test files failed");
    return 1;
  }
  const abort = new AbortController();
  const stop = () => abort.abort();
  Deno.addSignalListener("SIGINT", stop);
  const results = await runAll(files, jobs, { signal: abort.signal });
  Deno.removeSignalListener("SIGINT", stop);
  const bad = results.filter(fileFailed);
  const passed = results.reduce((s, r) => s + r.passed, 0),
    failed = results.reduce((s, r) => s + r.failed, 0);
  const secs = Math.floor((performance.now() - t0) / 1000);
  if (bad.length) console.log(`failed files:\n${bad.map((r) => `  ${fileLine(r)}`).join("\n")}\n`);
  console.log(
    `${bad.length || abort.signal.aborted ? "FAILED" : "ok"} | ${passed} passed | ${failed} failed | ` +
      `${results.length} of ${files.length} files, ${bad.length} failed, ${jobs} at a time ` +
      `(${Math.floor(secs / 60)}m${secs % 60}s)`,
  );
  return bad.length || abort.signal.aborted || results.length < files.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
