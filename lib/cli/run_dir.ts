/**
 * A resumable `keg eval --out DIR`, shared by the single-edit protocol (lib/cli/eval.ts) and the batch
 * protocol (lib/cli/batch.ts): the run key that decides whether DIR's results belong to this run, the
 * records already done (results.jsonl, a torn last line dropped), sequential final results, and the
 * applied edits that a sequential run saves before the result lines that refer to them (so a rerun can
 * re-apply them and continue from the same model).
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import type { AppliedEdit } from "../edit/applied.ts";
import { readEdits, writeEditsFile } from "../edit/edits_io.ts";
import type { FinalResult, IndexedRecord, RecordResult } from "../eval/protocol.ts";
import { readJsonl, RUN_FILES, type RunInfo, toJsonLine, uniqueByIndex } from "../eval/report.ts";
import { sha256Hex, writeFileAtomic } from "../util/fs.ts";

/** Subdirectory of a sequential run's applied-edits files. */
export const APPLIED_DIR = "applied";

/** The run.json of `dir`, or null when there is none. */
export async function readInfo(dir: string): Promise<RunInfo | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/${RUN_FILES.run}`)) as RunInfo;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`${dir}/${RUN_FILES.run}: ${(e as Error).message}`);
  }
}

/** The fields of a run.json without the run's own bookkeeping. */
export type RunBase = Omit<RunInfo, "key" | "created" | "limit" | "shard" | "records" | "mergedFrom">;

/** The fields whose equality makes two runs' results comparable record by record. */
export function keyFields(i: RunBase): Record<string, unknown> {
  return {
    hparamsValues: i.hparamsValues,
    fingerprint: i.fingerprint,
    dataSha256: i.dataSha256,
    format: i.format,
    precision: i.precision,
    protocol: i.protocol,
    update: i.update,
    stats: i.stats,
    fluency: i.fluency,
  };
}

/** The run key: a hash of {@link keyFields}. */
export async function runKey(base: RunBase): Promise<string> {
  return (await sha256Hex(JSON.stringify(keyFields(base)))).slice(0, 32);
}

/** Which key fields differ between two runs (for error messages). */
export function describeMismatch(a: RunInfo, b: RunInfo): string {
  const fa = keyFields(a), fb = keyFields(b);
  const diff = Object.keys(fa).filter((k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k]));
  return diff.map((k) => k === "hparamsValues" ? "hparams" : k).join(", ") || "settings";
}

/** Appends one JSON line to `path`. */
export async function appendLine(path: string, value: unknown): Promise<void> {
  await Deno.writeTextFile(path, toJsonLine(value) + "\n", { append: true, create: true });
}

/** Reads a JSON Lines file of a run and cuts off a torn last line (so the next append starts clean). */
export async function readAndRepair(path: string): Promise<unknown[]> {
  const c = await readJsonl(path);
  if (c.partial) {
    await Deno.truncate(path, c.validBytes);
    console.error(`${path}: dropped an incomplete last line (the previous run was cut off while writing it)`);
  }
  return c.values;
}

/** What {@link openRun} found in the run directory. */
export interface OpenedRun {
  /** results.jsonl and final.jsonl of the run. */
  resultsPath: string;
  finalPath: string;
  /** Records already done, by index. */
  done: Map<number, RecordResult>;
  /** Sequential runs: final results already done for this run's size, by index. */
  doneFinal: Map<number, FinalResult>;
}

/**
 * Opens `out` for the run `info` (the caller holds the directory lock): refuses a directory that holds a
 * run with other settings or another shard, writes run.json, and reads back what an earlier, interrupted
 * run of the same settings finished.
 */
export async function openRun(
  out: string,
  info: RunInfo,
  items: readonly IndexedRecord[],
  opts: { sequential: boolean; quiet?: boolean },
): Promise<OpenedRun> {
  const existing = await readInfo(out);
  if (existing) {
    if (existing.key !== info.key) {
      throw new Error(
        `${out} holds a run with other settings (${describeMismatch(existing, info)} differ); ` +
          `use another --out, or delete ${out} to start over`,
      );
    }
    if (JSON.stringify(existing.shard) !== JSON.stringify(info.shard)) {
      throw new Error(
        `${out} holds shard ${JSON.stringify(existing.shard)}, not ${
          JSON.stringify(info.shard)
        }; use another --out`,
      );
    }
  }
  await Deno.mkdir(out, { recursive: true });
  await writeFileAtomic(`${out}/${RUN_FILES.run}`, JSON.stringify(info, null, 2) + "\n");
  const resultsPath = `${out}/${RUN_FILES.results}`, finalPath = `${out}/${RUN_FILES.final}`;
  const byIndex = new Map(items.map((it) => [it.index, it.record]));
  const done = new Map<number, RecordResult>();
  for (const r of uniqueByIndex(await readAndRepair(resultsPath) as RecordResult[])) {
    const rec = byIndex.get(r.index);
    if (!rec) continue; // outside this selection (another --limit): kept, not summarised
    if (rec.caseId !== r.caseId) {
      throw new Error(
        `${resultsPath}: record ${r.index} has case ${r.caseId} but the dataset's record ${r.index} is case ` +
          `${rec.caseId}: the results belong to another dataset; use another --out`,
      );
    }
    done.set(r.index, r);
  }
  const doneFinal = new Map<number, FinalResult>();
  if (opts.sequential) {
    for (const f of await readAndRepair(finalPath) as FinalResult[]) {
      if (f.editsApplied === items.length && byIndex.has(f.index)) doneFinal.set(f.index, f);
    }
  }
  if (done.size && !opts.quiet) {
    console.error(`${out}: resuming, ${done.size} of ${items.length} records already done`);
  }
  return { resultsPath, finalPath, done, doneFinal };
}

/**
 * Saves the edits applied for record (or batch starting at record) `index` under `out/applied/` and
 * returns the path relative to `out` that result lines name in `appliedFile`. Write the file before the
 * line: a kill in between only leaves a file that the rerun overwrites.
 */
export async function saveApplied(
  out: string,
  index: number,
  applied: readonly AppliedEdit[],
): Promise<string> {
  const rel = `${APPLIED_DIR}/${String(index).padStart(6, "0")}.safetensors`;
  await Deno.mkdir(`${out}/${APPLIED_DIR}`, { recursive: true });
  await writeEditsFile(`${out}/${rel}`, applied);
  return rel;
}

/** Reads back the applied edits a done result names (checked against `model`). */
export async function loadApplied(
  out: string,
  r: RecordResult,
  model: LoadedModel,
): Promise<AppliedEdit[]> {
  if (!r.appliedFile) {
    throw new Error(
      `${out}/${RUN_FILES.results}: record ${r.index} has no appliedFile; the run cannot resume`,
    );
  }
  return await readEdits(`${out}/${r.appliedFile}`, model);
}
