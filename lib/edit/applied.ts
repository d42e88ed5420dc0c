/**
 * An applied edit as one value: what was added to which weight of which base model, and why. This is what
 * an editor keeps in its history, what `keg edit --save` writes, what `generate --edits` and a resumed
 * sequential evaluation read back and apply, and what a restore reverts. Diagnostics (losses, timings,
 * intermediate vectors) are not part of it: they live in the editor's report.
 *
 * The delta is stored as low-rank factors in the weight's (in, out) terms, ΔW = Σᵢ uᵢ rᵢᵀ with
 * u [rank, d_in] (key side) and r [rank, d_out] (value side), in f32: ROME has rank 1; a batch editor such
 * as MEMIT stores one entry per edited layer with rank = the number of requests of the batch (or any
 * factorisation of its update), all entries of one call sharing a `batch` number.
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import type { Linear } from "../model/transformer.ts";
import type { EditRequest } from "./request.ts";
import { applyRankOne } from "./update.ts";
import { Tensor } from "../gpu/tensor.ts";
import { lowRankUpdate } from "../ops/outer.ts";

/** ΔW = Σᵢ uᵢ rᵢᵀ (in, out terms), factors row-major in f32. */
export interface LowRankDelta {
  /** Number of factor pairs. */
  rank: number;
  /** Input size of the weight (length of each uᵢ). */
  dIn: number;
  /** Output size of the weight (length of each rᵢ). */
  dOut: number;
  /** Key-side factors [rank, d_in]. */
  u: Float32Array;
  /** Value-side factors [rank, d_out]. */
  r: Float32Array;
}

/** One weight delta applied to a model. */
export interface AppliedEdit {
  /** The algorithm that computed it: "rome", "r-rome", "p-rome", "memit", … */
  method: string;
  /** The edited layer. */
  layer: number;
  /** Checkpoint name of the edited weight. */
  weightName: string;
  /** The delta. */
  delta: LowRankDelta;
  /** The request(s) the delta serves (one for ROME; a batch editor lists its whole batch). */
  requests: EditRequest[];
  /** Fingerprint of the base model the delta was computed on. */
  fingerprint: string;
  /** Entries made by one editor call (a multi-layer batch edit) share this number; increasing. */
  batch: number;
}

/** A rank-one delta u rᵀ (the vectors are not copied). */
export function rankOneDelta(u: Float32Array, r: Float32Array): LowRankDelta {
  return { rank: 1, dIn: u.length, dOut: r.length, u, r };
}

/** Checks a delta's sizes; `where` names its source in the error. */
export function checkDelta(d: LowRankDelta, where: string): void {
  for (const k of ["rank", "dIn", "dOut"] as const) {
    if (!Number.isInteger(d[k]) || d[k] < 1) throw new Error(`${where}: ${k} must be a positive integer`);
  }
  if (d.u.length !== d.rank * d.dIn) {
    throw new Error(`${where}: u has ${d.u.length} values, expected rank ${d.rank} × d_in ${d.dIn}`);
  }
  if (d.r.length !== d.rank * d.dOut) {
    throw new Error(`${where}: r has ${d.r.length} values, expected rank ${d.rank} × d_out ${d.dOut}`);
  }
  if (!d.u.every(Number.isFinite) || !d.r.every(Number.isFinite)) {
    throw new Error(`${where}: the factors hold NaN or infinite values`);
  }
}

/** (d_in, d_out) of a linear layer's weight. */
export function linearDims(w: Linear): [number, number] {
  const [a, b] = w.w.shape;
  return w.layout === "in_out" ? [a, b] : [b, a];
}

/** The linear layer of `layer` whose weight is named `weightName`, or an error saying what is there. */
export function editableWeight(model: LoadedModel, layer: number, weightName: string): Linear {
  const blk = model.net.blocks[layer];
  if (!blk) {
    throw new Error(`edit of ${weightName}: layer ${layer} is outside 0..${model.net.blocks.length - 1}`);
  }
  const lins = [blk.mlpOut, blk.mlpIn, blk.mlpGate, blk.o, blk.q, blk.k, blk.v].filter((l): l is Linear =>
    l !== null
  );
  const hit = lins.filter((l) => l.name === weightName);
  if (hit.length !== 1) {
    throw new Error(
      hit.length
        ? `edit of ${weightName}: the weight is fused (shared by several projections) and cannot be edited`
        : `edit of ${weightName}: layer ${layer} has no such weight (its down-projection is ${blk.mlpOut.name})`,
    );
  }
  return hit[0];
}

function checkApplicable(model: LoadedModel, e: AppliedEdit, where: string): Linear {
  if (e.fingerprint !== model.fingerprint) {
    throw new Error(
      `${where}: the edit was made on another base model (fingerprint ${e.fingerprint}, this is ${model.fingerprint})`,
    );
  }
  checkDelta(e.delta, where);
  const w = editableWeight(model, e.layer, e.weightName);
  const [dIn, dOut] = linearDims(w);
  if (dIn !== e.delta.dIn || dOut !== e.delta.dOut) {
    throw new Error(
      `${where}: delta is ${e.delta.dIn}×${e.delta.dOut} (in×out) but ${e.weightName} is ${dIn}×${dOut}`,
    );
  }
  return w;
}

/** W += α·ΔW for one edit (α = −1 subtracts it; exact reverts use {@link restoreWeights}). */
export async function applyEdit(
  model: LoadedModel,
  e: AppliedEdit,
  alpha = 1,
  where = "edit",
): Promise<void> {
  const w = checkApplicable(model, e, where);
  const { rank, dIn, dOut, u, r } = e.delta;
  if (rank > 1) {
    // a batch edit's factors in one pass: Σᵢ accumulated in f32, W rounded once (lowRankUpdate)
    const gpu = w.w.gpu;
    const tu = Tensor.from(gpu, u, [rank, dIn], "f32", { name: "edit.u" });
    const tr = Tensor.from(gpu, r, [rank, dOut], "f32", { name: "edit.r" });
    await lowRankUpdate(w.w, tu, tr, alpha, { layout: w.layout });
    await gpu.sync();
    tu.dispose(), tr.dispose();
    return;
  }
  for (let i = 0; i < rank; i++) {
    await applyRankOne(
      w,
      { u: u.subarray(i * dIn, (i + 1) * dIn), r: r.subarray(i * dOut, (i + 1) * dOut) },
      alpha,
    );
  }
}

/**
 * Applies edits in order. Every edit is checked (base model, weight, sizes, finiteness) before the first
 * is applied, so a bad list changes nothing.
 */
export async function applyEdits(
  model: LoadedModel,
  edits: readonly AppliedEdit[],
  where = "edits",
): Promise<void> {
  edits.forEach((e, i) => checkApplicable(model, e, `${where} [${i}]`));
  for (const [i, e] of edits.entries()) await applyEdit(model, e, 1, `${where} [${i}]`);
}

/** Puts the checkpoint's values back into the named weights (an exact revert of every edit on them). */
export async function restoreWeights(model: LoadedModel, edits: readonly AppliedEdit[]): Promise<void> {
  const done = new Set<string>();
  for (const e of edits) {
    if (done.has(e.weightName)) continue;
    done.add(e.weightName);
    const w = editableWeight(model, e.layer, e.weightName).w;
    const src = await model.checkpoint.readFloat(e.weightName, w.dtype);
    w.write(src.data);
    await w.gpu.sync();
  }
}
