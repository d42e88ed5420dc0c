/**
 * Batch editing evaluation (MEMIT, AlphaEdit): records are edited `batchSize` at a time.
 * - independent: per batch, pre → one batch edit → post of the batch's records → restore;
 * - sequential: pre of every record on the unedited model, then batch after batch with edits kept; after
 *   each batch every batch so far is evaluated again (`retention[b][k]`: mean rewrite accuracy of batch k
 *   on the model after batch b — the curve AlphaEdit is about); the last row is the `final` phase.
 * Results are {@link RecordResult} lines like the single-edit protocol's (each record's `edits` entry
 * carries its batch's per-layer diagnostics and the batch time divided by the batch size).
 * Resumable ({@link BatchRunOptions.done}): done batches are skipped (sequential: their saved deltas are
 * re-applied with `MemitEditor.adopt`, which also rebuilds AlphaEdit's key cache), a partly done batch is
 * edited again and only its missing records are reported, missing retention rows are recomputed.
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import type { MemitBatchResult, MemitEditor } from "../edit/memit.ts";
import type { EditRequest } from "../edit/request.ts";
import type { AppliedEdit } from "../edit/applied.ts";
import {
  type EditDiagnostics,
  evaluatePhase,
  type FinalResult,
  type FluencyOptions,
  type IndexedRecord,
  type PhaseEval,
  type RecordResult,
  toEditorRequest,
} from "./protocol.ts";

/** One row of the retention curve. */
export interface RetentionRow {
  /** The batch just applied. */
  after: number;
  /** Per earlier batch k ≤ after: mean rewrite accuracy, paraphrase accuracy and locality. */
  rewrite: number[];
  rephrase: number[];
  locality: number[];
}

/** Options of {@link runBatchProtocol}. */
export interface BatchRunOptions {
  batchSize: number;
  sequential: boolean;
  fluency?: FluencyOptions | null;
  /**
   * Results already done (resume), by index. A batch whose records are all done is skipped (sequential:
   * its saved edits are re-applied with `editor.adopt`); a batch with some records done is edited again
   * from the same model (the same result) and only its missing records are reported.
   */
  done?: ReadonlyMap<number, RecordResult>;
  /** Sequential resume: the applied edits of a done record's batch (read from where `onRecord` saved them). */
  loadApplied?: (r: RecordResult) => Promise<AppliedEdit[]>;
  /** Sequential resume: the retention rows already done (row b is recomputed when it is missing). */
  doneRetention?: readonly RetentionRow[];
  /**
   * Called with each new record result, the edits its batch applied and the index of the batch's first
   * record, in index order (persist them here; `r.appliedFile` may be set before `r` is written).
   */
  onRecord: (r: RecordResult, applied: AppliedEdit[], batchFirst: number) => void | Promise<void>;
  /** Sequential: each record's metrics on the final model (all of them before the last retention row). */
  onFinal?: (f: FinalResult) => void | Promise<void>;
  onRetention?: (row: RetentionRow) => void | Promise<void>;
  onProgress?: (batchesDone: number, batches: number, last?: MemitBatchResult) => void;
}

const mean = (xs: number[]) => xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
const first = (x: number[] | undefined) => x?.length ? mean(x) : NaN;

function diagnostics(res: MemitBatchResult, i: number, method: string): EditDiagnostics {
  const z = res.z[i].steps;
  const B = res.requests.length;
  const dWRel = Math.max(...res.layers.map((l) => l.dWFro / l.wFro));
  return {
    subject: res.requests[i].subject,
    targetNew: res.requests[i].targetNew,
    layer: res.layers[res.layers.length - 1].layer,
    weightName: res.layers.map((l) => l.weightName).join(","),
    update: method,
    divisionFactor: NaN,
    dWRel,
    vNll: [z[0]?.nll ?? NaN, z[z.length - 1]?.nll ?? NaN],
    vForwards: z.length,
    fallbacks: [...res.fallbacks],
    warnings: [...res.warnings],
    timings: {
      templates: res.timings.templates / B,
      kStar: 0,
      vStar: res.timings.z / B,
      solve: res.timings.layers / B,
      update: 0,
      total: res.timings.total / B,
    },
  };
}

/**
 * Runs the records in batches through `editor` (whose model must be unedited on entry), skipping what
 * `opts.done` / `opts.doneRetention` hold; returns every retention row (done and new) in batch order.
 */
export async function runBatchProtocol(
  model: LoadedModel,
  editor: MemitEditor,
  items: readonly IndexedRecord[],
  opts: BatchRunOptions,
): Promise<RetentionRow[]> {
  if (!(opts.batchSize >= 1)) throw new Error(`--batch-size must be ≥ 1, got ${opts.batchSize}`);
  const done = opts.done ?? new Map<number, RecordResult>();
  const sorted = [...items].sort((a, b) => a.index - b.index);
  const batches: IndexedRecord[][] = [];
  for (let i = 0; i < sorted.length; i += opts.batchSize) batches.push(sorted.slice(i, i + opts.batchSize));
  const allDone = (batch: IndexedRecord[]) => batch.every((it) => done.has(it.index));
  const phase = { fluency: opts.fluency ?? null };
  const method = editor.hp.algName === "MEMIT" ? "memit" : "alphaedit";
  const pres = new Map<number, PhaseEval>();
  const evalAll = async (its: IndexedRecord[]) => {
    for (const it of its) {
      if (!pres.has(it.index)) pres.set(it.index, await evaluatePhase(model, it.record, phase));
    }
  };
  const retention = new Map<number, RetentionRow>();
  if (opts.sequential) {
    // done batches must be a prefix (their edits are re-applied in order); pre on the unedited model
    const firstOpen = batches.findIndex((b) => !allDone(b));
    const late = firstOpen < 0
      ? -1
      : batches.findIndex((b, i) => i > firstOpen && b.some((it) => done.has(it.index)));
    if (late >= 0) {
      throw new Error(
        `sequential resume: batch ${late} has results but batch ${firstOpen} is not complete; the results must ` +
          `be a prefix of the batches (was the dataset, --limit or --batch-size changed?)`,
      );
    }
    for (const r of opts.doneRetention ?? []) if (r.after < batches.length) retention.set(r.after, r);
    await evalAll(sorted.filter((it) => !done.has(it.index)));
  }
  if (batches.every(allDone) && (!opts.sequential || retention.size === batches.length)) {
    return [...retention.values()].sort((a, b) => a.after - b.after); // a finished run: nothing to redo
  }
  // the locality reference of a record: its pre phase, or what its done result saved
  const reference = (it: IndexedRecord) => pres.get(it.index)?.localityIds ?? done.get(it.index)?.localityPre;
  opts.onProgress?.(0, batches.length);
  for (const [b, batch] of batches.entries()) {
    let res: MemitBatchResult | null = null;
    if (allDone(batch)) {
      if (opts.sequential) {
        if (!opts.loadApplied) {
          throw new Error("sequential resume: no way to read the applied edits was given");
        }
        const r = done.get(batch[0].index)!;
        if (r.error === undefined) {
          await editor.adopt(await opts.loadApplied(r), `batch ${b} (record ${r.index})`);
        }
      }
    } else {
      res = await editAndReport(model, editor, batch, pres, done, phase, method, opts);
    }
    if (opts.sequential) {
      if (!retention.has(b)) {
        const row = await retentionRow(model, batches, b, reference, phase, sorted.length, opts);
        retention.set(b, row);
        await opts.onRetention?.(row);
      }
    } else if (editor.history.length) {
      await editor.restore();
    }
    opts.onProgress?.(b + 1, batches.length, res ?? undefined);
  }
  return [...retention.values()].sort((a, b) => a.after - b.after);
}

/** Edits one batch (pre phases first when independent) and reports its records that are not done yet. */
async function editAndReport(
  model: LoadedModel,
  editor: MemitEditor,
  batch: IndexedRecord[],
  pres: Map<number, PhaseEval>,
  done: ReadonlyMap<number, RecordResult>,
  phase: { fluency: FluencyOptions | null },
  method: string,
  opts: BatchRunOptions,
): Promise<MemitBatchResult | null> {
  if (!opts.sequential) {
    for (const it of batch) {
      if (!pres.has(it.index)) pres.set(it.index, await evaluatePhase(model, it.record, phase));
    }
  }
  const requests: EditRequest[] = batch.map((it) => toEditorRequest(it.record.request, it.record.caseId));
  const before = editor.history.length;
  const t0 = performance.now();
  let res: MemitBatchResult | null = null, error: string | undefined;
  try {
    res = await editor.editBatch(requests);
  } catch (e) {
    error = (e as Error).message;
  }
  const seconds = (performance.now() - t0) / 1000;
  const applied = editor.history.slice(before);
  for (const [i, it] of batch.entries()) {
    if (done.has(it.index)) continue;
    const pre = pres.get(it.index)!;
    const t1 = performance.now();
    const post = await evaluatePhase(model, it.record, { ...phase, reference: pre.localityIds });
    const r: RecordResult = {
      index: it.index,
      caseId: it.record.caseId,
      format: it.record.format,
      request: it.record.request,
      protocol: opts.sequential ? "sequential" : "independent",
      pre: pre.metrics,
      post: post.metrics,
      edits: res ? [diagnostics(res, i, method)] : [],
      time: seconds / batch.length,
      evalSeconds: (performance.now() - t1) / 1000,
      memory: model.net.devices.map((g) => ({
        device: g.label,
        liveBytes: g.memory().liveBytes,
        peakBytes: g.memory().peakBytes,
      })),
    };
    if (error !== undefined) r.error = error;
    if (opts.sequential) r.localityPre = pre.localityIds;
    await opts.onRecord(r, applied, batch[0].index);
  }
  return res;
}

/** Row b of the retention curve: every batch so far on the current model (the last row: `onFinal` too). */
async function retentionRow(
  model: LoadedModel,
  batches: IndexedRecord[][],
  b: number,
  reference: (it: IndexedRecord) => PhaseEval["localityIds"] | undefined,
  phase: { fluency: FluencyOptions | null },
  total: number,
  opts: BatchRunOptions,
): Promise<RetentionRow> {
  const row: RetentionRow = { after: b, rewrite: [], rephrase: [], locality: [] };
  const last = b === batches.length - 1;
  for (const earlier of batches.slice(0, b + 1)) {
    const ms = [];
    for (const it of earlier) {
      const m = (await evaluatePhase(model, it.record, { ...phase, reference: reference(it) })).metrics;
      ms.push(m);
      if (last) {
        await opts.onFinal?.({ index: it.index, caseId: it.record.caseId, editsApplied: total, final: m });
      }
    }
    row.rewrite.push(mean(ms.map((m) => first(m.rewriteAcc))));
    row.rephrase.push(mean(ms.map((m) => first(m.rephraseAcc))));
    row.locality.push(mean(ms.map((m) => mean(Object.values(m.locality ?? {}).flat()))));
  }
  return row;
}
