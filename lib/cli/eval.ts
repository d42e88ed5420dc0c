/**
 * `keg eval`: evaluate an editor on a dataset (EasyEdit and ROME CounterFact metrics), resumable and
 * shardable; `keg eval merge` combines shards; `keg eval report` re-renders the summary and report.
 *
 * A run directory (`--out DIR`) holds `run.json`, `results.jsonl` (one line per record, appended as each
 * record finishes: a killed run resumes where it stopped, a torn last line is dropped), `final.jsonl`
 * (sequential runs), and `summary.json`, `summary.md`, `report.html`.
 * @module
 */
import { parseArgs } from "node:util";
import { loadModel } from "../model/load.ts";
import { parsePrecision } from "../model/precision.ts";
import { applyOverrides, loadHparams, type RomeHparams } from "../edit/hparams.ts";
import { autoLayerText, resolveAutoLayer } from "../edit/trace.ts";
import { RomeEditor } from "../edit/rome.ts";
import { DATASET_FORMATS, type DatasetFormat, type EvalRecord, loadDataset } from "../eval/datasets/mod.ts";
import { DEFAULT_FLUENCY, type FluencyOptions, type IndexedRecord, runProtocol } from "../eval/protocol.ts";
import {
  buildSummary,
  readJsonl,
  readRunDir,
  renderHtml,
  renderMarkdown,
  RUN_FILES,
  type RunData,
  type RunInfo,
  runLabel,
  summaryJson,
  toJsonLine,
} from "../eval/report.ts";
import { checkWritable, type DirLock, lockDir, sha256Hex, writeFileAtomic } from "../util/fs.ts";
import {
  appendLine,
  describeMismatch,
  loadApplied,
  openRun,
  readInfo,
  runKey,
  saveApplied,
} from "./run_dir.ts";
import { intFlag, parseFlags, parseSet, required, UsageError } from "./args.ts";
import { profiled } from "./profile.ts";
import { statsFor } from "./edit.ts";
import type { Stats } from "../edit/covariance.ts";
import { checkEditSettings } from "../edit/checks.ts";
import { checkRecordsFit } from "../eval/checks.ts";
import { Progress } from "./progress.ts";
import { parseShardFlag } from "./shard.ts";
import { isBatchConfig } from "./batch_detect.ts";

/** Usage text. */
export const EVAL_USAGE: string =
  `keg eval --hparams <yaml> --model <dir> --data <json> --out <dir> [options]   evaluate edits
  --data F            dataset: EasyEdit or ROME CounterFact, ZsRE (MEND), MQuAKE, KnowEdit (auto-detected)
  --format F          force the dataset format (${DATASET_FORMATS.join(" | ")})
  --out DIR           run directory: results.jsonl (resumable), summary.json, summary.md, report.html
  --limit N           only the first N records
  --precision P       f32 | f16 | mixed (default: the hparams' precision)
  --sequential        keep every edit (then re-evaluate all records on the final model); default: each
                      edit is evaluated and undone (EasyEdit's default)
  --shard i/n         only records with index % n == i (combine with \`keg eval merge\`; not with --sequential);
                      auto: from a SLURM array task (SLURM_ARRAY_TASK_ID/COUNT) or, as auto/N, a
                      Kubernetes Indexed Job (JOB_COMPLETION_INDEX)
  --stats FILE        covariance statistics (safetensors mom2 [+ count]) instead of computing them
  --corpus FILES      comma-separated text files for computing the statistics (default: stats_corpus)
  --set k=v,…         override hparams keys, e.g. --set v_num_grad_steps=5,context_template_length_params=[[5,5]]
  --devices N|MAP     devices (default: the hparams' devices)
  --fluency           also score fluency (n-gram entropy of sampled generations; slow)
  --fluency-length N  tokens per generation, prompt included (default ${DEFAULT_FLUENCY.maxLength})
  --compare DIRS      comma-separated run directories shown side by side in report.html
  --quiet             no progress output
  --profile           GPU time per op and stage (timestamp queries), dispatch and readback counts
  --batch-size N      MEMIT / AlphaEdit configs: requests per batch (with --sequential: the retention curve)

keg eval merge --out DIR SHARD_DIR…    combine the shards of one run into DIR (summary as one run)
keg eval report --out DIR [--compare DIRS] [RUN_DIR…]   re-render DIR's summary and report (DIR may hold
                                       only runs in subdirectories: then the report compares them); with
                                       RUN_DIRs, DIR/report.html puts exactly those runs side by side
                                       (paired per-record differences with bootstrap intervals)`;

/** Parses `--shard` (`i/n`, `auto`, `auto/N`; see lib/cli/shard.ts) from the process environment. */
export function parseShard(s: string): { index: number; count: number } {
  return parseShardFlag("eval", s);
}

export { parseSet } from "./args.ts";

function splitList(v: unknown): string[] {
  return typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

/** Run directories among `dir`'s immediate subdirectories. */
async function subRuns(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isDirectory) continue;
      const sub = `${dir}/${e.name}`;
      if (await readInfo(sub)) out.push(sub);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** Writes summary.json, summary.md and report.html of a run (plus runs to compare); returns the markdown. */
export async function writeOutputs(dir: string, run: RunData | null, compare: RunData[]): Promise<string> {
  const runs = run ? [run, ...compare] : compare;
  let md = "";
  if (run) {
    md = renderMarkdown(run.summary, run.info);
    await writeFileAtomic(`${dir}/${RUN_FILES.summaryJson}`, summaryJson(run.summary, run.info));
    await writeFileAtomic(`${dir}/${RUN_FILES.summaryMd}`, md);
  }
  if (runs.length) await writeFileAtomic(`${dir}/${RUN_FILES.report}`, renderHtml(runs));
  return md;
}

async function comparisons(out: string, list: string[], withSubRuns = true): Promise<RunData[]> {
  const dirs = [...list, ...(withSubRuns ? await subRuns(out) : [])];
  const seen = new Set<string>();
  const runs: RunData[] = [];
  for (const d of dirs) {
    const key = await Deno.realPath(d).catch(() => d);
    if (seen.has(key)) continue;
    seen.add(key);
    runs.push(await readRunDir(d));
  }
  return runs;
}

/** Runs the command (or its `merge` / `report` subcommands). */
export async function evalCommand(args: string[]): Promise<void> {
  if (args[0] === "merge") return await mergeCommand(args.slice(1));
  if (args[0] === "report") return await reportCommand(args.slice(1));
  if (await isBatchConfig(args)) return await (await import("./batch.ts")).batchEvalCommand(args);
  const v = parseFlags("eval", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    data: { type: "string" },
    format: { type: "string" },
    out: { type: "string" },
    limit: { type: "string" },
    precision: { type: "string" },
    sequential: { type: "boolean" },
    shard: { type: "string" },
    stats: { type: "string" },
    corpus: { type: "string" },
    set: { type: "string" },
    devices: { type: "string" },
    fluency: { type: "boolean" },
    "fluency-length": { type: "string" },
    compare: { type: "string" },
    quiet: { type: "boolean" },
    profile: { type: "boolean" },
  });
  const hpPath = required("eval", v, "hparams");
  const dataPath = required("eval", v, "data");
  const out = required("eval", v, "out").replace(/\/+$/, "");
  const limit = v.limit === undefined ? null : intFlag("eval", v, "limit", 0);
  const shard = typeof v.shard === "string" ? parseShard(v.shard) : null;
  const sequential = v.sequential === true;
  if (sequential && shard) {
    throw new UsageError(
      "eval: --sequential cannot be sharded: in a sequential run every record is evaluated on a model that " +
        "holds all earlier edits, and a shard would start from the unedited model without the other shards' " +
        "edits, so merged shards would not equal one run. Run sequential evaluations in one process.",
    );
  }
  const format = v.format as string | undefined;
  if (format !== undefined && !DATASET_FORMATS.includes(format as DatasetFormat)) {
    throw new UsageError(
      `eval: --format must be one of ${DATASET_FORMATS.join(", ")}, got ${JSON.stringify(format)}`,
    );
  }
  const fluency: FluencyOptions | null = v.fluency
    ? { ...DEFAULT_FLUENCY, maxLength: intFlag("eval", v, "fluency-length", DEFAULT_FLUENCY.maxLength) }
    : null;
  const quiet = v.quiet === true;

  let hp: RomeHparams = await loadHparams(hpPath);
  const overrides: Record<string, unknown> = typeof v.set === "string" ? parseSet(v.set) : {};
  if (v.precision) overrides.precision = parsePrecision(String(v.precision), "--precision");
  if (Object.keys(overrides).length) hp = applyOverrides(hp, overrides);
  const modelName = (v.model as string | undefined) ?? hp.modelName;
  if (!modelName) throw new UsageError("eval: --model is required (or model_name in the hparams)");

  // Everything that can be wrong with the inputs fails here, before anything is written.
  const records: EvalRecord[] = await loadDataset(dataPath, {
    limit: limit ?? undefined,
    format: (format as DatasetFormat | undefined) ?? "auto",
  });
  if (!records.length) throw new Error(`${dataPath}: no records to evaluate`);
  const items: IndexedRecord[] = records.map((record, index) => ({ index, record }))
    .filter((it) => !shard || it.index % shard.count === shard.index);
  if (!items.length) {
    throw new Error(`shard ${shard!.index}/${shard!.count} of ${records.length} records is empty`);
  }
  const dataSha = await sha256Hex(await Deno.readFile(dataPath));

  const model = await loadModel(modelName, {
    precision: hp.precision,
    devices: (v.devices as string) ?? hp.devices,
  });
  let lock: DirLock | null = null;
  let editor: RomeEditor | null = null;
  let stats: Stats | null = null;
  try {
    if (!model.tokenizer) throw new Error(`${model.dir} has no tokenizer; evaluation needs one`);
    if (hp.layersAuto) {
      // The same first records for every shard, so shards agree on the layer.
      const prompts = records.slice(0, 10).map((r) => ({
        prompt: r.request.prompt,
        subject: r.request.subject,
      }));
      hp = await resolveAutoLayer(model, hp, prompts);
      if (!quiet) console.error(`layers: auto → [${hp.layers[0]}] (${autoLayerText(hp.autoLayer!)})`);
    }
    // the inputs, statistics and editor settings are checked before anything is written
    checkEditSettings(model, hp);
    checkRecordsFit(model, hp, records, dataPath);
    await checkWritable(out, "--out", "dir");
    stats = await statsFor(model, hp, { stats: v.stats as string, corpus: v.corpus as string });
    editor = new RomeEditor(model, hp, { stats });
    lock = await lockDir(out, `keg eval --out ${out}`);
    const statsLabel = !hp.mom2Adjustment
      ? "identity (mom2_adjustment false)"
      : v.stats
      ? `file ${v.stats}`
      : `computed from ${(v.corpus as string | undefined) ?? hp.statsCorpus ?? "?"}`;
    const base = {
      version: 1,
      hparams: hpPath,
      hparamsValues: hp.autoLayer ? { ...hp.raw, layers_auto: hp.autoLayer } : { ...hp.raw },
      model: model.dir,
      fingerprint: model.fingerprint,
      data: dataPath,
      dataSha256: dataSha,
      format: records[0].format,
      precision: hp.precision,
      protocol: sequential ? "sequential" as const : "independent" as const,
      update: hp.update,
      stats: statsLabel,
      fluency: fluency ? { ...fluency } : null,
    };
    const info: RunInfo = {
      ...base,
      key: await runKey(base),
      limit,
      shard,
      records: items.length,
      created: new Date().toISOString(),
    };
    const { resultsPath, finalPath, done, doneFinal } = await openRun(out, info, items, {
      sequential,
      quiet,
    });
    const pending = items.length - done.size;

    if (pending > 0 || (sequential && doneFinal.size < items.length)) {
      const bars: Partial<Record<string, Progress>> = {};
      const label = { pre: "eval pre", edit: "eval", final: "eval final" } as const;
      const ed = editor;
      try {
        await profiled(v.profile === true, model.net.devices, () =>
          runProtocol(model, ed, items, {
            protocol: info.protocol,
            fluency,
            done,
            doneFinal,
            onRecord: async (r, applied) => {
              // the edits file first (atomic), then the line that refers to it
              if (sequential) r.appliedFile = await saveApplied(out, r.index, applied);
              await appendLine(resultsPath, r);
            },
            loadApplied: (r) => loadApplied(out, r, model),
            onFinal: (f) => appendLine(finalPath, f),
            onProgress: (stage, n, total, last) => {
              if (quiet) return;
              const base = stage === "edit" ? done.size : 0;
              const bar = bars[stage] ??= new Progress(label[stage], base + total, base, { unit: "rec" });
              if (n === 0) return;
              const extra = last
                ? `${
                  last.error
                    ? "edit failed"
                    : `rewrite ${((last.post.rewriteAcc?.[0] ?? NaN) * 100).toFixed(0)}%`
                }`
                : "";
              bar.tick(base + n - bar.done, extra);
              if (n === total) bar.finish();
            },
          }));
      } finally {
        editor.dispose();
        editor = null;
      }
    }
    const run = await readRunDir(out);
    const md = await writeOutputs(out, run, await comparisons(out, splitList(v.compare)));
    if (!quiet) console.log(md);
    if (!quiet) {
      console.error(`wrote ${out}/${RUN_FILES.summaryJson}, ${RUN_FILES.summaryMd}, ${RUN_FILES.report}`);
    }
  } finally {
    editor?.dispose();
    stats?.c.dispose();
    await model.dispose();
    lock?.release();
  }
}

/** `keg eval merge --out DIR SHARD_DIR…`. */
async function mergeCommand(args: string[]): Promise<void> {
  let values: Record<string, unknown>, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { out: { type: "string" }, compare: { type: "string" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`eval merge: ${(e as Error).message}`);
  }
  const out = required("eval merge", values, "out").replace(/\/+$/, "");
  if (!positionals.length) throw new UsageError("eval merge: give the shard directories after --out DIR");
  const shards: RunData[] = [];
  for (const d of positionals) {
    const r = await readRunDir(d);
    if (!r.info) throw new Error(`${d}: no ${RUN_FILES.run}; not a keg eval run`);
    shards.push(r);
  }
  const outReal = await Deno.realPath(out).catch(() => null);
  for (const s of shards) {
    if (outReal && (await Deno.realPath(s.dir!)) === outReal) {
      throw new Error(`eval merge: --out ${out} is one of the shards; merge into a new directory`);
    }
  }
  const first = shards[0].info!;
  const count = first.shard?.count ?? 1;
  const seen = new Map<number, string>();
  for (const s of shards) {
    const i = s.info!;
    if (i.key !== first.key) {
      throw new Error(
        `eval merge: ${s.dir} was run with other settings than ${shards[0].dir} (${
          describeMismatch(first, i)
        } differ)`,
      );
    }
    if (JSON.stringify(i.limit) !== JSON.stringify(first.limit)) {
      throw new Error(`eval merge: ${s.dir} has --limit ${i.limit}, ${shards[0].dir} has ${first.limit}`);
    }
    const sh = i.shard ?? { index: 0, count: 1 };
    if (sh.count !== count) {
      throw new Error(`eval merge: ${s.dir} is shard ${sh.index}/${sh.count}, expected …/${count}`);
    }
    if (seen.has(sh.index)) {
      throw new Error(
        `eval merge: shard ${sh.index}/${count} given twice (${seen.get(sh.index)} and ${s.dir})`,
      );
    }
    seen.set(sh.index, s.dir!);
    if (s.results.length !== i.records) {
      throw new Error(
        `eval merge: ${s.dir} (shard ${sh.index}/${count}) has ${s.results.length} of its ${i.records} records; ` +
          `finish it first by rerunning its command`,
      );
    }
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length) {
    throw new Error(`eval merge: missing shard(s) ${missing.map((i) => `${i}/${count}`).join(", ")}`);
  }
  const results = shards.flatMap((s) => s.results).sort((a, b) => a.index - b.index);
  for (let i = 1; i < results.length; i++) {
    if (results[i].index === results[i - 1].index) {
      throw new Error(`eval merge: record ${results[i].index} is in two shards`);
    }
  }
  const info: RunInfo = {
    ...first,
    shard: null,
    records: results.length,
    mergedFrom: shards.map((s) => s.dir!),
    created: new Date().toISOString(),
  };
  await checkWritable(out, "--out", "dir");
  const lock = await lockDir(out, `keg eval merge --out ${out}`);
  try {
    const existing = await readInfo(out);
    if (existing && existing.key !== info.key) {
      throw new Error(
        `${out} holds a run with other settings (${
          describeMismatch(existing, info)
        } differ); merge into a new directory`,
      );
    }
    await writeFileAtomic(`${out}/${RUN_FILES.results}`, results.map((r) => toJsonLine(r) + "\n").join(""));
    await writeFileAtomic(`${out}/${RUN_FILES.run}`, JSON.stringify(info, null, 2) + "\n");
  } finally {
    lock.release();
  }
  const run: RunData = {
    label: runLabel(info, out),
    dir: out,
    info,
    results,
    summary: buildSummary(results),
  };
  const md = await writeOutputs(out, run, await comparisons(out, splitList(values.compare)));
  console.log(md);
  console.error(`merged ${shards.length} shards (${results.length} records) into ${out}`);
}

/** `keg eval report --out DIR [--compare DIRS] [RUN_DIR…]`. */
async function reportCommand(args: string[]): Promise<void> {
  let v: Record<string, unknown>, positionals: string[];
  try {
    ({ values: v, positionals } = parseArgs({
      args,
      options: { out: { type: "string" }, compare: { type: "string" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`eval report: ${(e as Error).message}`);
  }
  const out = required("eval report", v, "out").replace(/\/+$/, "");
  const hasRun = (await readInfo(out)) !== null ||
    (await readJsonl(`${out}/${RUN_FILES.results}`)).values.length > 0;
  const own = hasRun ? await readRunDir(out) : null;
  // runs named on the command line, in that order (each must be a run); else --compare and subdirectories
  for (const d of positionals) {
    if (!(await readInfo(d)) && !(await readJsonl(`${d}/${RUN_FILES.results}`)).values.length) {
      throw new Error(
        `eval report: ${d} is not a keg eval run (no ${RUN_FILES.run}, no ${RUN_FILES.results})`,
      );
    }
  }
  const others = positionals.length
    ? await comparisons(out, [...positionals, ...splitList(v.compare)], false)
    : await comparisons(out, splitList(v.compare));
  if (!own && !others.length) throw new Error(`${out}: no run here and no runs in its subdirectories`);
  await Deno.mkdir(out, { recursive: true });
  const md = await writeOutputs(out, own, others);
  if (md) console.log(md);
  console.error(
    `wrote ${out}/${RUN_FILES.report}${own ? `, ${RUN_FILES.summaryJson}, ${RUN_FILES.summaryMd}` : ""} (${
      (own ? 1 : 0) + others.length
    } runs)`,
  );
}

if (import.meta.main) {
  try {
    await evalCommand(Deno.args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${e.message}\n\n${EVAL_USAGE}`);
      Deno.exit(2);
    }
    console.error(`keg eval: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  }
}
