/**
 * ROME, R-ROME, MEMIT and AlphaEdit side by side on the same CounterFact records of both ../shared fact
 * models (issue 12's README results table):
 *
 * ```sh
 * deno run -A scripts/methods_table.ts [--out out/methods-table] [--limit 20] [--batch-size 10]
 *   [--models tiny-gpt2-counterfact,tiny-llama-counterfact] [--methods ROME,R-ROME,MEMIT,AlphaEdit]
 *   [--table-only]
 * ```
 *
 * One `keg eval` per (model, method) into `OUT/<model>/<method>`, with `configs/<method>/<model>.yaml`, the
 * first `--limit` records of ../shared's counterfact-rome and f32: ROME and R-ROME edit one record at a time,
 * MEMIT and AlphaEdit `--batch-size` records per batch; every edit starts from the unedited model
 * (independent protocol for all four). The script is resumable: a run whose summary.json already covers
 * `--limit` records is skipped, and an interrupted `keg eval` resumes from its results.jsonl (both the
 * single-edit and the batch protocol do), so rerun the same command after a kill. Then it prints the
 * markdown table: EasyEdit accuracies and ROME's ES / PS / NS / S (%, post-edit) and seconds per edit (a
 * batch's edit time divided by its size), with the load average at the start and end of the runs.
 * `--table-only --partial` prints the table now: a run still going (or cut off) is summarised from the
 * records it has finished (`keg eval report`), with its record count in the n column.
 * @module
 */
import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const shared = `${root}/../shared`;
const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "out/methods-table" },
    limit: { type: "string", default: "20" },
    "batch-size": { type: "string", default: "10" },
    models: { type: "string", default: "tiny-gpt2-counterfact,tiny-llama-counterfact" },
    methods: { type: "string", default: "ROME,R-ROME,MEMIT,AlphaEdit" },
    data: { type: "string", default: `${shared}/data/datasets/counterfact-rome/counterfact.json` },
    "table-only": { type: "boolean", default: false },
    partial: { type: "boolean", default: false },
  },
  strict: true,
});
const limit = Number(v.limit), batchSize = Number(v["batch-size"]);
const models = v.models.split(",").filter(Boolean), methods = v.methods.split(",").filter(Boolean);
const BATCH = new Set(["MEMIT", "AlphaEdit"]);

interface Summary {
  num_cases: number;
  easyedit: { post: { rewrite_acc: number; rephrase_acc: number; locality?: Record<string, number> } };
  rome: Record<string, [number, number | null]>;
  diagnostics: { failed: number; timing: { editSeconds: [number, number] } };
}

async function readSummary(dir: string): Promise<Summary | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as Summary;
  } catch {
    return null;
  }
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

async function runOne(model: string, method: string): Promise<void> {
  const dir = `${v.out}/${model}/${method}`;
  if ((await readSummary(dir))?.num_cases === limit) return;
  const args = [
    "eval",
    "--hparams",
    `${root}/configs/${method}/${model}.yaml`,
    "--model",
    `${shared}/models/${model}`,
    "--data",
    v.data,
    "--limit",
    String(limit),
    "--out",
    dir,
    "--quiet",
  ];
  if (BATCH.has(method)) args.push("--batch-size", String(batchSize));
  console.error(
    `methods_table: ${model} ${method} (${new Date().toISOString()}, load ${await loadAverage()})`,
  );
  // one retry: the rerun resumes where the failed run stopped (its statistics are cached by then)
  for (let attempt = 0;; attempt++) {
    const st = await new Deno.Command(`${root}/keg`, { args, stdout: "inherit", stderr: "inherit" }).output();
    if (st.success) return;
    if (attempt === 1) throw new Error(`keg ${args.join(" ")} failed (exit ${st.code})`);
    console.error(`methods_table: ${model} ${method} failed (exit ${st.code}); resuming once`);
  }
}

const f1 = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(1);

/** A summary of the records a run has finished so far (`keg eval report` re-renders it from results.jsonl). */
async function partialSummary(dir: string): Promise<Summary | null> {
  try {
    if (!(await Deno.stat(`${dir}/results.jsonl`)).size) return null;
  } catch {
    return null;
  }
  const st = await new Deno.Command(`${root}/keg`, {
    args: ["eval", "report", "--out", dir],
    stdout: "null",
    stderr: "null",
  }).output();
  return st.success ? await readSummary(dir) : null;
}

async function table(): Promise<string> {
  const rows = [
    "| model | method | protocol | n | rewrite acc | rephrase acc | locality | ES | PS | NS | S | s/edit |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const model of models) {
    for (const method of methods) {
      const dir = `${v.out}/${model}/${method}`;
      let s = await readSummary(dir);
      if (v.partial && s?.num_cases !== limit) s = await partialSummary(dir);
      const proto = BATCH.has(method) ? `batches of ${batchSize}` : "one at a time";
      if (!s) {
        rows.push(`| ${model} | ${method} | ${proto} | 0 | not run | | | | | | | |`);
        continue;
      }
      const e = s.easyedit.post, r = s.rome;
      const loc = e.locality ? Object.values(e.locality)[0] : undefined;
      rows.push(
        `| ${model} | ${method} | ${proto} | ${s.num_cases} | ${f1(100 * e.rewrite_acc)} | ${
          f1(100 * e.rephrase_acc)
        } | ${f1(loc === undefined ? undefined : 100 * loc)} | ${f1(r.post_rewrite_success?.[0])} | ${
          f1(r.post_paraphrase_success?.[0])
        } | ${f1(r.post_neighborhood_success?.[0])} | ${f1(r.post_score?.[0] ?? undefined)} | ${
          f1(s.diagnostics.timing.editSeconds[0])
        } |`,
      );
    }
  }
  return rows.join("\n");
}

const load0 = await loadAverage(), t0 = new Date().toISOString();
if (!v["table-only"]) {
  for (const model of models) for (const method of methods) await runOne(model, method);
}
console.log(
  `records 0–${limit - 1} of ${
    v.data.replace(`${shared}/`, "../shared/")
  }, f32, configs/<method>/<model>.yaml; ` +
    `runs from ${t0} (load ${load0}) to ${new Date().toISOString()} (load ${await loadAverage()})\n`,
);
console.log(await table());
