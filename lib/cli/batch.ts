/**
 * `keg edit` and `keg eval` for batch editors (alg_name MEMIT or AlphaEdit): the commands dispatch here
 * when the hparams file names one of them.
 *
 * - `keg edit --hparams configs/MEMIT/… --requests F [--batch-size N] [--save DIR]`: the requests in
 *   batches of N (default: the file's batch_size, else all at once), applied sequentially; prints the
 *   top prediction of every request before and after, per-layer diagnostics and timings.
 * - `keg eval --hparams configs/MEMIT/… --data F --out DIR --batch-size N [--sequential]`: the batch
 *   protocol (lib/eval/batch_protocol.ts); sequential runs also write `retention.json` and a retention
 *   table in summary.md and report.html. A killed run resumes when rerun with the same --out (lib/cli/run_dir.ts;
 *   sequential: the saved deltas of the done batches are re-applied, AlphaEdit's key cache rebuilt).
 *
 * `--stats` takes one statistics file per edited layer, comma-separated in layer order; otherwise C_l is
 * computed from stats_corpus (and cached) for each layer.
 * @module
 */
import { type LoadedModel, loadModel } from "../model/load.ts";
import { parsePrecision } from "../model/precision.ts";
import { padBatch } from "../model/transformer.ts";
import { applyMemitOverrides, loadMemitHparams, type MemitHparams } from "../edit/memit_hparams.ts";
import { type MemitBatchResult, MemitEditor } from "../edit/memit.ts";
import { cachedNullSpace } from "../edit/null_space.ts";
import { loadStatsFile, type Stats } from "../edit/covariance.ts";
import { loadRequests } from "../edit/request.ts";
import { saveEdits } from "../edit/edits_io.ts";
import { applyOverrides } from "../edit/hparams.ts";
import { type DatasetFormat, loadDataset } from "../eval/datasets/mod.ts";
import type { FinalResult, IndexedRecord, RecordResult } from "../eval/protocol.ts";
import { type RetentionRow, runBatchProtocol } from "../eval/batch_protocol.ts";
import { readRunDir, RUN_FILES, type RunInfo, toJsonLine } from "../eval/report.ts";
import { checkWritable, lockDir, sha256Hex, writeFileAtomic } from "../util/fs.ts";
import {
  appendLine,
  APPLIED_DIR,
  loadApplied,
  openRun,
  readAndRepair,
  runKey,
  saveApplied,
} from "./run_dir.ts";
import { intFlag, parseFlags, parseSet, required, UsageError } from "./args.ts";
import { statsFor } from "./edit.ts";
import { retentionHtml, retentionMarkdown } from "./retention.ts";

async function loadHp(v: Record<string, unknown>): Promise<MemitHparams> {
  let hp = await loadMemitHparams(required("edit", v, "hparams"));
  const o: Record<string, unknown> = typeof v.set === "string" ? parseSet(v.set) : {};
  if (v.precision) o.precision = parsePrecision(String(v.precision), "--precision");
  if (Object.keys(o).length) hp = applyMemitOverrides(hp, o);
  return hp;
}

/** Per-layer statistics: `--stats` files in layer order, else computed / cached from the corpus. */
function statsSource(
  model: LoadedModel,
  hp: MemitHparams,
  v: Record<string, unknown>,
): (l: number) => Promise<Stats> {
  const files = typeof v.stats === "string" ? v.stats.split(",").filter(Boolean) : [];
  if (files.length && files.length !== hp.layers.length) {
    throw new UsageError(
      `--stats: give one file per edited layer [${hp.layers}] in order (got ${files.length})`,
    );
  }
  return async (l: number) => {
    const i = hp.layers.indexOf(l);
    if (files.length) return await loadStatsFile(model, l, files[i]);
    const s = await statsFor(model, applyOverrides(hp.base, { layers: [l] }), { corpus: v.corpus as string });
    if (!s) throw new Error(`${hp.source}: mom2_adjustment is false; ${hp.algName} needs C`);
    return s;
  };
}

function editorFor(model: LoadedModel, hp: MemitHparams, v: Record<string, unknown>): MemitEditor {
  const stats = statsSource(model, hp, v);
  return new MemitEditor(model, hp, {
    stats,
    nullSpaces: async (l) => {
      const s = await stats(l);
      try {
        const ns = await cachedNullSpace(s, hp.nullspaceThreshold);
        console.error(
          `layer ${l}: null space rank ${ns.rank} of ${s.c.shape[0]}${ns.cached ? " (cached)" : ""}`,
        );
        return ns;
      } finally {
        s.c.dispose();
      }
    },
  });
}

async function topToken(model: LoadedModel, text: string): Promise<string> {
  const tok = model.tokenizer!;
  const r = await model.net.forward(padBatch([tok.encode(text)]), { logitRows: "last" });
  const l = await r.logits.read();
  r.logits.dispose();
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
  return tok.decode([best]);
}

function describeBatch(res: MemitBatchResult): string {
  const lines = res.layers.map((l) =>
    `  layer ${l.layer}: ‖z − cur_z‖ ${l.zErrorMean.toFixed(3)}, ‖ΔW‖/‖W‖ ${
      (l.dWFro / l.wFro).toFixed(4)
    }, ` +
    `‖ΔW K − R‖/‖R‖ ${l.dWKMinusResidRel.toFixed(4)}${
      l.nullRank !== undefined ? `, P rank ${l.nullRank}` : ""
    }`
  );
  const t = res.timings;
  lines.push(
    `  seconds: templates ${t.templates.toFixed(2)}, z ${t.z.toFixed(2)}, layers ${t.layers.toFixed(2)}, ` +
      `total ${t.total.toFixed(2)} (${(t.total / res.requests.length).toFixed(2)} per edit)`,
  );
  for (const w of res.warnings) lines.push(`  warning: ${w}`);
  for (const f of res.fallbacks) lines.push(`  fallback to f32 activations: ${f}`);
  return lines.join("\n");
}

/** `keg edit` with a MEMIT / AlphaEdit config. */
export async function batchEditCommand(args: string[]): Promise<void> {
  const v = parseFlags("edit", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    requests: { type: "string" },
    "batch-size": { type: "string" },
    stats: { type: "string" },
    corpus: { type: "string" },
    set: { type: "string" },
    precision: { type: "string" },
    devices: { type: "string" },
    save: { type: "string" },
  });
  const hp = await loadHp(v);
  const requests = await loadRequests(required("edit", v, "requests"));
  const batchSize = intFlag("edit", v, "batch-size", hp.batchSize > 1 ? hp.batchSize : requests.length);
  const modelName = (v.model as string | undefined) ?? hp.base.modelName;
  if (!modelName) throw new UsageError("edit: --model is required (or model_name in the hparams)");
  if (v.save) await checkWritable(String(v.save), "--save", "dir");
  const model = await loadModel(modelName, {
    precision: hp.base.precision,
    devices: (v.devices as string) ?? hp.base.devices,
  });
  const editor = editorFor(model, hp, v);
  try {
    const pre = [];
    for (const r of requests) pre.push(await topToken(model, r.prompt.replace("{}", () => r.subject)));
    for (let i = 0; i < requests.length; i += batchSize) {
      const batch = requests.slice(i, i + batchSize);
      console.log(
        `\n${hp.algName} batch ${i / batchSize + 1}: ${batch.length} request(s), layers [${hp.layers}]`,
      );
      console.log(describeBatch(await editor.editBatch(batch)));
    }
    let ok = 0;
    for (const [i, r] of requests.entries()) {
      const post = await topToken(model, r.prompt.replace("{}", () => r.subject));
      if (
        post.trim() === r.targetNew.trim().split(/\s+/)[0] ||
        post.trim() && r.targetNew.startsWith(post.trim())
      ) ok++;
      console.log(
        `${JSON.stringify(r.prompt.replace("{}", () => r.subject))}: ${JSON.stringify(pre[i])} → ${
          JSON.stringify(post)
        } (target ${JSON.stringify(r.targetNew)})`,
      );
    }
    console.log(`\n${ok} of ${requests.length} requests now start with their target's first token`);
    if (v.save) {
      const path = await saveEdits(String(v.save), editor.history, hp.base.raw);
      console.log(`saved ${editor.history.length} layer deltas (f32 low-rank factors) to ${path}`);
    }
  } finally {
    editor.dispose();
    await model.dispose();
  }
}

/** Sequential batch runs: the retention rows as they are computed (retention.json is written at the end). */
const RETENTION_LINES = "retention.jsonl";

/** `keg eval` with a MEMIT / AlphaEdit config. */
export async function batchEvalCommand(args: string[]): Promise<void> {
  const v = parseFlags("eval", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    data: { type: "string" },
    format: { type: "string" },
    out: { type: "string" },
    limit: { type: "string" },
    precision: { type: "string" },
    sequential: { type: "boolean" },
    "batch-size": { type: "string" },
    stats: { type: "string" },
    corpus: { type: "string" },
    set: { type: "string" },
    devices: { type: "string" },
    quiet: { type: "boolean" },
  });
  const hp = await loadHp(v);
  const dataPath = required("eval", v, "data");
  const out = required("eval", v, "out").replace(/\/+$/, "");
  const limit = v.limit === undefined ? null : intFlag("eval", v, "limit", 0);
  const batchSize = intFlag("eval", v, "batch-size", hp.batchSize);
  const sequential = v.sequential === true;
  const records = await loadDataset(dataPath, {
    limit: limit ?? undefined,
    format: (v.format as DatasetFormat | undefined) ?? "auto",
  });
  if (!records.length) throw new Error(`${dataPath}: no records to evaluate`);
  const items: IndexedRecord[] = records.map((record, index) => ({ index, record }));
  await checkWritable(out, "--out", "dir");
  const modelName = (v.model as string | undefined) ?? hp.base.modelName;
  if (!modelName) throw new UsageError("eval: --model is required (or model_name in the hparams)");
  const model = await loadModel(modelName, {
    precision: hp.base.precision,
    devices: (v.devices as string) ?? hp.base.devices,
  });
  const editor = editorFor(model, hp, v);
  const lock = await lockDir(out, `keg eval --out ${out}`);
  try {
    const raw = {
      ...hp.base.raw,
      alg_name: hp.algName,
      mom2_update_weight: hp.mom2UpdateWeight,
      batch_size: batchSize,
    };
    if (hp.algName === "AlphaEdit") {
      Object.assign(raw, { nullspace_threshold: hp.nullspaceThreshold, L2: hp.l2 });
    }
    const base = {
      version: 1,
      hparams: String(v.hparams),
      hparamsValues: raw,
      model: model.dir,
      fingerprint: model.fingerprint,
      data: dataPath,
      dataSha256: await sha256Hex(await Deno.readFile(dataPath)),
      format: records[0].format,
      precision: hp.base.precision,
      protocol: sequential ? "sequential" as const : "independent" as const,
      update: `${hp.algName.toLowerCase()} (batches of ${batchSize})`,
      stats: v.stats
        ? `files ${v.stats}`
        : `computed from ${(v.corpus as string | undefined) ?? hp.base.statsCorpus ?? "?"}`,
      fluency: null,
    };
    const info: RunInfo = {
      ...base,
      key: await runKey(base),
      limit,
      shard: null,
      records: items.length,
      created: new Date().toISOString(),
    };
    // resumable like the single-edit protocol: done records are skipped; a sequential run re-applies the
    // saved deltas of its done batches (AlphaEdit also rebuilds its key cache) and continues from there
    const { resultsPath, finalPath, done } = await openRun(out, info, items, {
      sequential,
      quiet: !!v.quiet,
    });
    const retentionPath = `${out}/${RETENTION_LINES}`;
    const doneRetention = sequential ? await readAndRepair(retentionPath) as RetentionRow[] : [];
    const finals: FinalResult[] = [];
    const written = new Set<number>();
    const retention: RetentionRow[] = await runBatchProtocol(model, editor, items, {
      batchSize,
      sequential,
      done,
      doneRetention,
      loadApplied: (r) => loadApplied(out, r, model),
      onRecord: async (r: RecordResult, applied, batchFirst) => {
        if (sequential) {
          // the batch's deltas first (atomic, once per batch), then the lines that refer to them
          const rel = written.has(batchFirst) ? null : await saveApplied(out, batchFirst, applied);
          written.add(batchFirst);
          r.appliedFile = rel ?? `${APPLIED_DIR}/${String(batchFirst).padStart(6, "0")}.safetensors`;
        }
        await appendLine(resultsPath, r);
      },
      onFinal: (f) => void finals.push(f),
      onRetention: async (row) => {
        // the last row comes after every final result: final.jsonl is complete before the row is saved
        if (finals.length) {
          await writeFileAtomic(finalPath, finals.map((f) => toJsonLine(f) + "\n").join(""));
        }
        await appendLine(retentionPath, row);
      },
      onProgress: (done, total, last) => {
        if (v.quiet || !done) return;
        console.error(`batch ${done}/${total}${last ? ` (${last.timings.total.toFixed(1)} s)` : ""}`);
      },
    });
    await writeFileAtomic(
      `${out}/retention.json`,
      JSON.stringify({ batchSize, rows: retention }, null, 2) + "\n",
    );
    const run = await readRunDir(out);
    const { writeOutputs } = await import("./eval.ts");
    let md = await writeOutputs(out, run, []);
    if (sequential) {
      md += "\n" + retentionMarkdown(retention, batchSize);
      await writeFileAtomic(`${out}/${RUN_FILES.summaryMd}`, md);
      const html = await Deno.readTextFile(`${out}/${RUN_FILES.report}`);
      await writeFileAtomic(
        `${out}/${RUN_FILES.report}`,
        html.replace("</body>", retentionHtml(retention, batchSize) + "\n</body>"),
      );
    }
    if (!v.quiet) console.log(md);
  } finally {
    editor.dispose();
    await model.dispose();
    lock.release();
  }
}
