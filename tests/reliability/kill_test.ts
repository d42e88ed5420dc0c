/**
 * Kill-at-any-moment tests: processes that write keg's outputs are SIGKILLed at seeded random moments and
 * what they leave is checked to be the old state or the new one, never a mix; a rerun then completes.
 *
 * - saved edits and exported checkpoints (the code paths of `edit --save` and `--export`, driven in a
 *   loop by tests/reliability/_writer.ts so that kills land inside the writes);
 * - `keg eval --sequential` (run.json, results.jsonl, the per-record applied edits, final.jsonl, summaries):
 *   killed at several moments and resumed, it equals an uninterrupted run record by record;
 * - `keg stats`: killed and rerun, the cached C equals an uninterrupted run's.
 */
import assert from "node:assert/strict";
import { FAKE_GPT2, listTree, writeHparams } from "./_fixture.ts";
import { readEdits } from "../../lib/edit/edits_io.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { writeDirAtomic } from "../../lib/util/fs.ts";
import { comparableResult, type RecordResult } from "../../lib/eval/protocol.ts";
import { readJsonl, uniqueByIndex } from "../../lib/eval/report.ts";
import { rng, sharedPath } from "../_util.ts";

const CF = sharedPath("data/datasets/counterfact-rome/counterfact.json");
const CORPUS = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
const MAIN = new URL("../../lib/cli/main.ts", import.meta.url).pathname;
const WRITER = new URL("./_writer.ts", import.meta.url).pathname;
const ready = FAKE_GPT2 !== null && CF !== null && CORPUS !== null;
const opts = { ignore: !ready, sanitizeResources: false, sanitizeOps: false };

/** Spawns deno with `args`; `waitFor` resolves when a stdout/stderr line matches. */
function spawn(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    env: { ...env, XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (const w of waiters.filter((w) => w.re.test(text))) w.resolve();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  return {
    child,
    output: () => text,
    waitFor: (re: RegExp) =>
      new Promise<void>((resolve) => re.test(text) ? resolve() : waiters.push({ re, resolve })),
    /** Kills (if still running) and waits; true when the process was killed rather than finished. */
    async kill(): Promise<boolean> {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      const st = await child.status;
      await pumps;
      return st.signal === "SIGKILL";
    },
    async done(): Promise<Deno.CommandStatus> {
      const st = await child.status;
      await pumps;
      return st;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "kill at any moment: saved edits and exported checkpoints are absent or complete, leftovers cleaned",
  ...opts,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "keg_kill_write_" });
    const r = rng(11);
    try {
      const want = (await listTree(FAKE_GPT2!)).filter((n) => !n.includes("/")).sort();
      let killedInside = 0;
      for (let run = 0; run < 4; run++) {
        const dir = `${root}/run${run}`;
        await Deno.mkdir(dir);
        const p = spawn([WRITER, dir, FAKE_GPT2!]);
        await p.waitFor(/wrote 0/);
        await sleep(r() * 250);
        assert.ok(await p.kill(), `writer ${run} was killed: ${p.output()}`);
        const names = await listTree(dir);
        const last = Math.max(...[...p.output().matchAll(/wrote (\d+)/g)].map((m) => Number(m[1])));
        let ref: Uint8Array | null = null;
        for (let i = 0; names.some((n) => n.startsWith(`save${i}`) || n.startsWith(`export${i}`)); i++) {
          // saved edits: no file, or a file that reads back whole
          const file = `${dir}/save${i}/keg_edits.safetensors`;
          if (names.includes(`save${i}/keg_edits.safetensors`)) {
            const [e] = await readEdits(file);
            assert.equal(e.delta.rank, 2);
          } else assert.ok(i > last, `save${i} is missing although wrote ${i} was printed`);
          // exported checkpoint: absent, or every file with the edited weight
          if (names.includes(`export${i}`)) {
            const files = names.filter((n) => n.startsWith(`export${i}/`)).map((n) =>
              n.slice(`export${i}/`.length)
            );
            assert.deepEqual(files.sort(), want, `export${i} is complete`);
            const f = await openSafetensors(`${dir}/export${i}/model.safetensors`);
            const bytes = (await f.read("transformer.h.0.mlp.c_proj.weight")).bytes;
            await f.close();
            ref ??= bytes;
            assert.deepEqual(bytes, ref, `export${i} holds the edited weight`);
          } else assert.ok(i > last, `export${i} is missing although wrote ${i} was printed`);
        }
        // a kill inside an export leaves only a temporary sibling, removed by the next export there
        const partial = names.filter((n) => /^export\d+\.keg-tmp-\d+-/.test(n) && !n.includes("/"));
        if (partial.length) {
          killedInside++;
          const target = `${dir}/${partial[0].split(".keg-tmp-")[0]}`;
          await writeDirAtomic(target, async (tmp) => await Deno.writeTextFile(`${tmp}/x`, "x"));
          const after = await listTree(dir);
          assert.ok(!after.some((n) => n.includes(".keg-tmp-")), `leftovers removed: ${after}`);
        }
      }
      console.log(`writer killed 4 times, ${killedInside} time(s) inside an export`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

async function results(dir: string): Promise<RecordResult[]> {
  const c = await readJsonl(`${dir}/results.jsonl`);
  return uniqueByIndex(c.values as RecordResult[]).sort((a, b) => a.index - b.index);
}

/** What a killed eval may leave: whole files or none, and every complete result line's edits readable. */
async function checkEvalState(dir: string): Promise<number> {
  const names = await listTree(dir);
  if (names.includes("run.json")) JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  for (const s of ["summary.json"]) if (names.includes(s)) JSON.parse(await Deno.readTextFile(`${dir}/${s}`));
  if (!names.includes("results.jsonl")) return 0;
  const text = await Deno.readTextFile(`${dir}/results.jsonl`);
  const lines = text.split("\n").slice(0, -1); // a torn last line (no newline) is repaired on resume
  for (const l of lines) {
    const r = JSON.parse(l) as RecordResult;
    assert.ok(r.appliedFile, "sequential results name their applied edits");
    const edits = await readEdits(`${dir}/${r.appliedFile}`);
    assert.equal(edits.length, r.edits.filter((e) => e.error === undefined).length);
  }
  return lines.length;
}

Deno.test({
  name: "kill at any moment: a sequential eval resumed after kills equals an uninterrupted run",
  ...opts,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "keg_kill_eval_" });
    try {
      const hp = await writeHparams(`${root}/hp.yaml`);
      const recs = (JSON.parse(await Deno.readTextFile(CF!)) as Record<string, unknown>[]).slice(0, 3).map((
        r,
      ) => ({
        ...r,
        paraphrase_prompts: (r.paraphrase_prompts as string[]).slice(0, 1),
        neighborhood_prompts: (r.neighborhood_prompts as string[]).slice(0, 1),
        attribute_prompts: [],
        generation_prompts: [],
      }));
      await Deno.writeTextFile(`${root}/cf.json`, JSON.stringify(recs));
      const env = { KEG_CACHE: `${root}/cache` };
      const args = (
        out: string,
      ) => [
        MAIN,
        "eval",
        "--hparams",
        hp,
        "--model",
        FAKE_GPT2!,
        "--data",
        `${root}/cf.json`,
        "--out",
        out,
        "--sequential",
        "--quiet",
      ];
      const t0 = performance.now();
      const base = spawn(args(`${root}/one`), env);
      assert.equal((await base.done()).code, 0, base.output());
      const T = performance.now() - t0;
      const seen: number[] = [];
      for (const frac of [0.3, 0.55, 0.75, 0.9]) {
        const p = spawn(args(`${root}/killed`), env);
        await sleep(frac * T);
        await p.kill(); // a run that finished first leaves the new state, checked the same way
        seen.push(await checkEvalState(`${root}/killed`));
      }
      const fin = spawn(args(`${root}/killed`), env);
      assert.equal((await fin.done()).code, 0, fin.output());
      const one = await results(`${root}/one`), two = await results(`${root}/killed`);
      assert.equal(two.length, 3);
      assert.deepEqual(
        two.map(comparableResult),
        one.map(comparableResult),
        "resumed results equal one run's",
      );
      assert.deepEqual(two.map((r) => r.final), one.map((r) => r.final));
      const fa = (await readJsonl(`${root}/one/final.jsonl`)).values.length;
      assert.ok(fa >= 3);
      console.log(`eval killed at 4 moments (complete result lines after each: ${seen.join(", ")})`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

async function statsFiles(cache: string): Promise<string[]> {
  return (await listTree(`${cache}/stats`)).filter((n) => n.endsWith(".safetensors") && !n.includes(".tmp-"));
}

Deno.test({
  name: "kill at any moment: stats killed and rerun cache the same C as an uninterrupted run",
  ...opts,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "keg_kill_stats_" });
    try {
      const hp = await writeHparams(`${root}/hp.yaml`, { mom2_adjustment: "true" });
      const args = [
        MAIN,
        "stats",
        "--hparams",
        hp,
        "--model",
        FAKE_GPT2!,
        "--corpus",
        CORPUS!,
        "--samples",
        "200",
      ];
      const t0 = performance.now();
      const base = spawn(args, { KEG_CACHE: `${root}/base` });
      assert.equal((await base.done()).code, 0, base.output());
      const T = performance.now() - t0;
      const [final] = (await statsFiles(`${root}/base`)).filter((n) => !n.includes("partial"));
      assert.ok(final, "the uninterrupted run cached C");
      const read = async (p: string) => {
        const f = await openSafetensors(p);
        const m = (await f.readFloat("mom2", "f32")).data;
        const count = f.metadata.count;
        await f.close();
        return { m, count };
      };
      const want = await read(`${root}/base/stats/${final}`);
      for (const frac of [0.5, 0.85]) {
        const p = spawn(args, { KEG_CACHE: `${root}/k` });
        await sleep(frac * T);
        await p.kill();
        for (const n of await statsFiles(`${root}/k`)) {
          const f = await openSafetensors(`${root}/k/stats/${n}`); // whole files only
          await f.close();
        }
      }
      const fin = spawn(args, { KEG_CACHE: `${root}/k` });
      assert.equal((await fin.done()).code, 0, fin.output());
      const got = await read(`${root}/k/stats/${final}`);
      assert.equal(got.count, want.count);
      assert.deepEqual(got.m, want.m);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
