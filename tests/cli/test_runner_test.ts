import assert from "node:assert/strict";
import { fileFailed, fileLine, runAll, testFiles } from "../../scripts/test.ts";

// scripts/test.ts (./keg test) runs each test file in its own process: a failed test, and a process that
// dies after all its tests passed (as CI once saw: SIGABRT from heap corruption at exit), fail the run and
// are named by file; the passed counts are summed from deno's closing lines.
Deno.test("test runner: one process per file; a crash after passing tests fails and names its file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keg_runner_" });
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/a_test.ts`, `Deno.test("a", () => {}); Deno.test("a2", () => {});`);
    await Deno.writeTextFile(
      `${dir}/sub/b_test.ts`,
      `Deno.test("b", () => { throw new Error("b fails"); });`,
    );
    await Deno.writeTextFile(
      `${dir}/c_test.ts`,
      `globalThis.addEventListener("unload", () => Deno.kill(Deno.pid, "SIGABRT"));
       Deno.test("c", () => {});`,
    );
    await Deno.writeTextFile(`${dir}/helper.ts`, `export const x = 1;`);
    const files = await testFiles([dir]);
    assert.deepEqual(files, [`${dir}/a_test.ts`, `${dir}/c_test.ts`, `${dir}/sub/b_test.ts`]);
    const printed: string[] = [];
    const results = await runAll(files, 2, { onResult: (r) => Promise.resolve(void printed.push(r.file)) });
    assert.deepEqual(printed.toSorted(), files, "every file's result is handed on once");
    const by = new Map(results.map((r) => [r.file.slice(dir.length + 1), r]));
    const a = by.get("a_test.ts")!, b = by.get("sub/b_test.ts")!, c = by.get("c_test.ts")!;
    assert.deepEqual([a.passed, a.failed, a.code, fileFailed(a)], [2, 0, 0, false]);
    assert.deepEqual([b.passed, b.failed, fileFailed(b)], [0, 1, true]);
    assert.match(b.output, /b fails/);
    assert.deepEqual([c.signal, c.code, fileFailed(c)], ["SIGABRT", null, true]);
    assert.match(fileLine(c), /^FAILED .*c_test\.ts: killed by SIGABRT/);
    assert.match(fileLine(a), /^ok .*a_test\.ts: 2 passed, 0 failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
