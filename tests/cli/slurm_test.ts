/**
 * keg on a real single-node SLURM (Debian's slurmctld, slurmd, slurm-client and munge, started by the test
 * under a temp dir and stopped by pid): scripts/slurm/submit.sh runs a 2-task statistics array, its merge,
 * a 2-task eval array of 4 records and the eval merge as dependent jobs; the merged C equals a single
 * `keg stats` run's (within f32 summation-order error, same cache file and metadata) and the merged eval
 * equals a single-process eval record by record. An array task whose `--shard` disagrees with its SLURM
 * variables fails with a clear error and writes nothing. Skips (with a message) when SLURM is not
 * installed or not root; fails under CI=true.
 * @module
 */
import assert from "node:assert/strict";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import { comparableResult, type RecordResult } from "../../lib/eval/protocol.ts";
import { readJsonl } from "../../lib/eval/report.ts";
import { sharedPath } from "../_util.ts";
import { slurmMissing, startCluster } from "./_slurm.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

function skipOrFail(reason: string): boolean {
  const msg =
    `SLURM integration test: ${reason} (Debian: apt-get install -y slurmctld slurmd slurm-client munge)`;
  if (Deno.env.get("CI") === "true") throw new Error(`${msg}; CI=true requires it`);
  console.warn(`SKIP: ${msg}`);
  return true;
}

async function keg(args: string[], env: Record<string, string>): Promise<string> {
  const o = await new Deno.Command(`${ROOT}/keg`, { args, env, cwd: ROOT, stdin: "null" }).output();
  const td = new TextDecoder();
  if (!o.success) throw new Error(`keg ${args.join(" ")}: exit ${o.code}\n${td.decode(o.stderr)}`);
  return td.decode(o.stdout);
}

async function readC(path: string): Promise<{ c: Float32Array; meta: Record<string, string> }> {
  const f = await openSafetensors(path);
  try {
    return { c: (await f.readFloat("mom2", "f32")).data, meta: { ...f.metadata } };
  } finally {
    await f.close();
  }
}

async function statsFile(cache: string): Promise<string> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${cache}/stats`)) {
    if (/^layer0-[0-9a-f]+\.safetensors$/.test(e.name)) names.push(e.name);
  }
  assert.equal(names.length, 1, `one cached C in ${cache}/stats, found ${names.join(", ")}`);
  return `${cache}/stats/${names[0]}`;
}

async function logs(dir: string): Promise<string> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".log")) {
      out.push(`--- ${e.name}\n${await Deno.readTextFile(`${dir}/${e.name}`)}`);
    }
  }
  return out.join("\n");
}

Deno.test({
  name: "SLURM: 2-task stats array + merge == one keg stats; 2-task eval array + merge == one eval",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const model = sharedPath("models/tiny-gpt2-counterfact");
    const data = sharedPath("data/datasets/counterfact-rome/counterfact.json");
    const corpus = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
    if (!model || !data || !corpus) return;
    const missing = slurmMissing();
    if (missing === "root" && skipOrFail("needs root (slurmd runs jobs as their user)")) return;
    if (missing && skipOrFail(`${missing} not found`)) return;

    const cluster = await startCluster(2);
    const work = await Deno.makeTempDir({ prefix: "keg-slurm-work-" });
    try {
      // a fast config: ROME on tiny-gpt2, C from 64 WikiText lines (2 batches of 32), 3 v* forwards
      const yaml = (await Deno.readTextFile(`${ROOT}/configs/ROME/tiny-gpt2-counterfact.yaml`))
        .replace(/^v_num_grad_steps:.*$/m, "v_num_grad_steps: 3")
        .replace(/^mom2_n_samples:.*$/m, "mom2_n_samples: 64")
        .replace(/^context_template_length_params:.*$/m, "context_template_length_params: [[5, 2]]")
        .replace(/^stats_corpus:.*$/m, `stats_corpus: "${corpus}"`);
      const hp = `${work}/rome-fast.yaml`;
      await Deno.writeTextFile(hp, yaml);
      const flags = ["--hparams", hp, "--model", model, "--data", data, "--limit", "4"];
      const slurmCache = `${work}/cache-slurm`, singleCache = `${work}/cache-single`;
      const run = `${work}/run`;

      // the pipeline: stats array → stats merge → eval array → eval merge
      const submitted = await cluster.run(`${ROOT}/scripts/slurm/submit.sh`, [run, "2", "2", ...flags], {
        KEG: `${ROOT}/keg`,
        KEG_CACHE: slurmCache,
      });
      const jobs = [...submitted.matchAll(/(?:array|merge) (\d+)/g)].map((m) => m[1]);
      assert.equal(jobs.length, 4, `submit.sh printed four job ids: ${submitted}`);
      // meanwhile, one statistics run in this process's way
      await keg(["stats", "--hparams", hp, "--model", model], { KEG_CACHE: singleCache });
      await cluster.wait(jobs, 900).catch(async (e) => {
        throw new Error(`${(e as Error).message}\n${await logs(run)}`);
      });

      // statistics: the merged C is the single run's C (same file name = same key, same metadata)
      const merged = await statsFile(slurmCache), single = await statsFile(singleCache);
      assert.equal(merged.split("/").pop(), single.split("/").pop());
      const a = await readC(merged), b = await readC(single);
      assert.deepEqual(a.meta, b.meta);
      let maxAbs = 0, worst = 0;
      for (let i = 0; i < b.c.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(b.c[i]));
        worst = Math.max(worst, Math.abs(a.c[i] - b.c[i]));
      }
      assert.ok(worst <= 1e-5 * maxAbs, `merged C differs by ${worst} (max |C| ${maxAbs})`);

      // evaluation: merged shards == one process (which finds the merged C in the same cache)
      await keg(["eval", ...flags, "--out", `${work}/single`, "--quiet"], { KEG_CACHE: slurmCache });
      const got = (await readJsonl(`${run}/merged/results.jsonl`)).values as RecordResult[];
      const want = (await readJsonl(`${work}/single/results.jsonl`)).values as RecordResult[];
      assert.deepEqual(got.map((r) => r.index), [0, 1, 2, 3]);
      assert.deepEqual(got.map(comparableResult), want.map(comparableResult));
      for (const f of ["summary.json", "summary.md", "report.html"]) await Deno.stat(`${run}/merged/${f}`);

      // an array task whose --shard disagrees with SLURM_ARRAY_TASK_ID/COUNT fails and writes nothing
      const bad = `${work}/bad`;
      await Deno.mkdir(bad);
      const id = (await cluster.run("sbatch", [
        "--parsable",
        "--array=0-1",
        "-o",
        `${bad}/task-%a.log`,
        "--wrap",
        `${ROOT}/keg eval ${flags.join(" ")} --shard 0/3 --out ${bad}/out --quiet`,
      ])).trim();
      await cluster.wait([id], 300);
      for (const t of [0, 1]) {
        const log = await Deno.readTextFile(`${bad}/task-${t}.log`);
        assert.match(
          log,
          new RegExp(`--shard 0/3 disagrees with this SLURM array task, which is shard ${t}/2`),
        );
      }
      await assert.rejects(() => Deno.stat(`${bad}/out`), Deno.errors.NotFound);
    } finally {
      await cluster.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
