/**
 * Batch evaluations (MEMIT / AlphaEdit `keg eval --batch-size N`) SIGKILLed at several moments and rerun
 * with the same --out equal an uninterrupted run: every result line (timings aside), the final-model
 * results and the retention rows. The sequential AlphaEdit run is the hard case: a resumed run must
 * re-apply the saved deltas of its done batches and rebuild the cache of preserved keys exactly, or the
 * later batches' updates (and so their metrics) differ. On ../shared's tiny-gpt2-counterfact, layer 0, with
 * a synthetic diagonal C (eight eigenvalues under the null-space threshold, so the eigensolver is instant
 * and P's rank is 8) and 2 z forwards, 3 records with short prompt lists, so a run takes seconds.
 */
import assert from "node:assert/strict";
import { writeSafetensors } from "../../lib/model/safetensors.ts";
import { comparableResult, type FinalResult, type RecordResult } from "../../lib/eval/protocol.ts";
import { readJsonl, uniqueByIndex } from "../../lib/eval/report.ts";
import { sharedPath } from "../_util.ts";

const CF = sharedPath("data/datasets/counterfact-rome/counterfact.json");
const MAIN = new URL("../../lib/cli/main.ts", import.meta.url).pathname;
const CONFIGS = new URL("../../configs/", import.meta.url).pathname;
const MODEL = sharedPath("models/tiny-gpt2-counterfact");
const opts = { ignore: MODEL === null || CF === null, sanitizeResources: false, sanitizeOps: false };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs keg to the end, or SIGKILLs it after `killAfterMs`; returns whether it was killed and its output. */
async function run(args: string[], env: Record<string, string>, killAfterMs?: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { ...env, XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const text = Promise.all([child.stdout, child.stderr].map((s) => new Response(s).text()));
  if (killAfterMs !== undefined) {
    await sleep(killAfterMs);
    try {
      child.kill("SIGKILL");
    } catch { /* already finished */ }
  }
  const st = await child.status;
  return { code: st.code, killed: st.signal === "SIGKILL", output: (await text).join("\n") };
}

async function setup(root: string): Promise<string[]> {
  // C of layer 0's down-projection input (d_ff 1024): diagonal, 1e-3 at every 128th key coordinate
  // (under the 0.02 threshold: P's rank is 8), 1 elsewhere
  const d = 1024, c = new Float32Array(d * d);
  for (let i = 0; i < d; i++) c[i * d + i] = i % 128 === 5 ? 1e-3 : 1;
  await writeSafetensors(`${root}/c.safetensors`, [{ name: "mom2", dtype: "F32", shape: [d, d], data: c }], {
    count: "1000",
  });
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
  return [
    "--model",
    MODEL!,
    "--data",
    `${root}/cf.json`,
    "--stats",
    `${root}/c.safetensors`,
    "--set",
    "layers=[0],v_num_grad_steps=2,context_template_length_params=[[3,5]]",
    "--quiet",
  ];
}

async function results(dir: string): Promise<RecordResult[]> {
  const c = await readJsonl(`${dir}/results.jsonl`);
  return uniqueByIndex(c.values as RecordResult[]).sort((a, b) => a.index - b.index);
}

async function finals(dir: string): Promise<FinalResult[]> {
  return ((await readJsonl(`${dir}/final.jsonl`)).values as FinalResult[]).sort((a, b) => a.index - b.index);
}

/** Kills a run at 3 moments spread over an uninterrupted run's duration, then lets it finish. */
async function killAndResume(
  args: (out: string) => string[],
  root: string,
  env: Record<string, string>,
): Promise<number[]> {
  const t0 = performance.now();
  const one = await run(args(`${root}/one`), env);
  assert.equal(one.code, 0, one.output);
  const T = performance.now() - t0;
  const seen: number[] = [];
  for (const frac of [0.4, 0.65, 0.85]) {
    const p = await run(args(`${root}/killed`), env, frac * T);
    if (!p.killed) assert.equal(p.code, 0, p.output);
    seen.push((await results(`${root}/killed`)).length);
  }
  const fin = await run(args(`${root}/killed`), env);
  assert.equal(fin.code, 0, fin.output);
  return seen;
}

Deno.test({
  name: "batch eval resume: sequential AlphaEdit killed 3 times and rerun equals one run (deltas, key cache)",
  ...opts,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "keg_batch_resume_" });
    try {
      const common = await setup(root);
      const env = { KEG_CACHE: `${root}/cache` };
      const args = (out: string) => [
        "eval",
        "--hparams",
        `${CONFIGS}AlphaEdit/tiny-gpt2-counterfact.yaml`,
        ...common,
        "--batch-size",
        "1",
        "--sequential",
        "--out",
        out,
      ];
      const seen = await killAndResume(args, root, env);
      const one = await results(`${root}/one`), two = await results(`${root}/killed`);
      assert.equal(two.length, 3);
      assert.deepEqual(
        two.map(comparableResult),
        one.map(comparableResult),
        "resumed results equal one run's",
      );
      assert.ok(one.every((r) => r.error === undefined && r.edits[0].dWRel > 0), "every batch edited");
      assert.deepEqual(await finals(`${root}/killed`), await finals(`${root}/one`));
      const ret = async (d: string) => JSON.parse(await Deno.readTextFile(`${d}/retention.json`));
      assert.deepEqual(await ret(`${root}/killed`), await ret(`${root}/one`));
      assert.equal((await ret(`${root}/one`)).rows.length, 3);
      console.log(`sequential AlphaEdit killed at 3 moments (complete result lines after each: ${seen})`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "batch eval resume: independent MEMIT batches killed and rerun equal one run",
  ...opts,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "keg_batch_resume_" });
    try {
      const common = await setup(root);
      const env = { KEG_CACHE: `${root}/cache` };
      const args = (out: string) => [
        "eval",
        "--hparams",
        `${CONFIGS}MEMIT/tiny-gpt2-counterfact.yaml`,
        ...common,
        "--batch-size",
        "2",
        "--out",
        out,
      ];
      const seen = await killAndResume(args, root, env);
      const one = await results(`${root}/one`), two = await results(`${root}/killed`);
      assert.equal(two.length, 3);
      assert.deepEqual(
        two.map(comparableResult),
        one.map(comparableResult),
        "resumed results equal one run's",
      );
      console.log(`independent MEMIT killed at 3 moments (complete result lines after each: ${seen})`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
