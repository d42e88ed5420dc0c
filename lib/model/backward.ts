/**
 * Activation gradients through the top of a transformer, for ROME's v* optimisation: forward from a
 * layer's output with a tape, then backward from dLoss/dlogits to dLoss/d(that layer's output).
 * No weight gradients are formed. Gradients are f32 whatever the storage precision.
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import { gatherRows, scatterAddRows } from "../ops/embedding.ts";
import { linearT } from "../ops/matmul.ts";
import { layerNormBackward, rmsNormBackward } from "../ops/norm.ts";
import { addInPlace, geluNewBackward, siluMulBackward } from "../ops/activation.ts";
import { attentionBackward } from "../ops/attention.ts";
import { rotaryBackward } from "../ops/rotary.ts";
import { cast } from "../ops/elementwise.ts";
import {
  type BlockTape,
  disposeTape,
  type ModelKvCache,
  moveTo,
  type Norm,
  type TokenBatch,
  type Transformer,
} from "./transformer.ts";

/** The result of {@link forwardWithTape}. */
export interface TapedForward {
  /** f32 logits [rows, V] of the selected rows (all T rows when none were selected). */
  logits: Tensor;
  /** The selected rows (flat indices), or null for all. */
  rows: Uint32Array | null;
  /** Tapes of blocks `from` … last. */
  tapes: BlockTape[];
  /** Input of the final norm. */
  xFinal: Tensor;
  from: number;
  /** The prefix cache the blocks attended to (suffix rows, lib/model/suffix.ts), if any. */
  cache?: ModelKvCache;
}

/**
 * Runs blocks `from`… of `net` on `x` (the residual stream entering block `from`; consumed) keeping a tape,
 * then the final norm and LM head on the selected rows (all rows when `rows` is null). Selecting only the
 * rows a loss reads saves most of the LM head's work on large vocabularies. With `cache` (a prefix from
 * lib/model/suffix.ts's `prefillAbove`), `b` is a batch of suffix rows that follow the cached tokens.
 */
export async function forwardWithTape(
  net: Transformer,
  x: Tensor,
  from: number,
  b: TokenBatch,
  rows: Uint32Array | null = null,
  cache?: ModelKvCache,
): Promise<TapedForward> {
  const tapes: BlockTape[] = [];
  for (let i = from; i < net.blocks.length; i++) {
    x = await moveTo(x, net.deviceOf(i));
    const tape: Partial<BlockTape> = {};
    await net.block(i, x, b, undefined, tape, cache);
    tapes.push(tape as BlockTape);
  }
  const xFinal = await cast(x, x.dtype);
  const logits = await net.head(x, rows ?? new Uint32Array(0), rows === null);
  x.dispose();
  return { logits, rows, tapes, xFinal, from, ...(cache ? { cache } : {}) };
}

/** Releases everything a taped forward holds (its tapes, the final residual and the logits). */
export function disposeTaped(taped: TapedForward): void {
  taped.tapes.forEach(disposeTape);
  taped.xFinal.dispose();
  taped.logits.dispose();
}

async function normBackward(net: Transformer, x: Tensor, n: Norm, dy: Tensor): Promise<Tensor> {
  const c = net.config;
  return c.normType === "rmsnorm"
    ? await rmsNormBackward(x, n.w, dy, c.normEps)
    : await layerNormBackward(x, n.w, dy, c.normEps);
}

/** The input gradient of {@link Transformer.headNorm}: per-head RMSNorm backward on [T, heads·headDim]. */
async function headNormBackward(
  net: Transformer,
  xRaw: Tensor,
  n: Norm,
  dy: Tensor,
  heads: number,
): Promise<Tensor> {
  const c = net.config;
  const rows = xRaw.rows * heads;
  const dx = await rmsNormBackward(
    xRaw.reshape([rows, c.headDim]),
    n.w,
    dy.reshape([rows, c.headDim]),
    c.normEps,
  );
  return dx.reshape([xRaw.rows, heads * c.headDim]);
}

/**
 * dLoss/d(block input) from dLoss/d(block output) for block `i` (consumes dOut). With `cache`, `b`'s rows
 * followed the cached prefix (see {@link forwardWithTape}); the prefix's keys and values are constants.
 */
export async function blockBackward(
  net: Transformer,
  i: number,
  t: BlockTape,
  dOut: Tensor,
  b: TokenBatch,
  cache?: ModelKvCache,
): Promise<Tensor> {
  const c = net.config;
  const blk = net.blocks[i];
  // MLP branch: out = down(act(...)); dKey = dOut · down
  const dKey = await linearT(dOut, blk.mlpOut.w, { layout: blk.mlpOut.layout, outDtype: "f32" });
  let dMlpIn: Tensor;
  if (blk.mlpGate) {
    const { dGate, dUp } = await siluMulBackward(t.gate!, t.up, dKey);
    dMlpIn = await linearT(dUp, blk.mlpIn.w, { layout: blk.mlpIn.layout, outDtype: "f32" });
    await linearT(dGate, blk.mlpGate.w, { layout: blk.mlpGate.layout, out: dMlpIn, accumulate: true });
    dGate.dispose(), dUp.dispose();
  } else {
    const dUp = await geluNewBackward(t.up, dKey);
    dMlpIn = await linearT(dUp, blk.mlpIn.w, { layout: blk.mlpIn.layout, outDtype: "f32" });
    dUp.dispose();
  }
  dKey.dispose();

  // For a sequential block, dMid = dOut + LN2'(dMlpIn); the attention branch then sees dMid.
  // For GPT-J's parallel block, both branches read h = ln_1(x): dH collects both and dAttnOut = dOut.
  let dMid: Tensor;
  let dH: Tensor | null = null;
  if (blk.ln2) {
    const dx2 = await normBackward(net, t.mid!, blk.ln2, dMlpIn);
    dMlpIn.dispose();
    await addInPlace(dx2, dOut);
    dMid = dx2;
    dOut.dispose();
  } else {
    dH = dMlpIn;
    dMid = dOut;
  }
  const dA = await linearT(dMid, blk.o.w, { layout: blk.o.layout, outDtype: "f32" });
  let dq: Tensor, dk: Tensor, dv: Tensor;
  if (cache) {
    // attention read the whole cache; only the rows this batch appended (after each row's prefix) vary
    const kv = cache.layers[i];
    const shape = { ...net.attentionShape(b, i), ...kv.attentionOptions(b.seq) };
    const grads = await attentionBackward(t.q, kv.k[0], kv.v[0], dA, shape);
    const own = Uint32Array.from({ length: b.batch * b.seq }, (_, r) => {
      const row = Math.floor(r / b.seq);
      return row * kv.maxLen + kv.lengths[row] + r % b.seq;
    });
    dq = grads.dq;
    dk = await gatherRows(grads.dk, own, { outDtype: "f32" });
    dv = await gatherRows(grads.dv, own, { outDtype: "f32" });
    grads.dk.dispose(), grads.dv.dispose();
  } else {
    ({ dq, dk, dv } = await attentionBackward(t.q, t.k, t.v, dA, net.attentionShape(b, i)));
  }
  dA.dispose();
  const ro = net.rotaryShape(b);
  if (ro) {
    const positionOffset = cache ? [...cache.lengths] : undefined;
    await rotaryBackward(dq, { ...ro, heads: c.numHeads, positionOffset });
    await rotaryBackward(dk, { ...ro, heads: c.numKvHeads, positionOffset });
  }
  if (blk.qNorm && blk.kNorm) {
    // Qwen3: q = headNorm(q_proj(h)) before rotary; back through each head's RMSNorm.
    const dqn = await headNormBackward(net, t.qRaw!, blk.qNorm, dq, c.numHeads);
    const dkn = await headNormBackward(net, t.kRaw!, blk.kNorm, dk, c.numKvHeads);
    dq.dispose(), dk.dispose();
    dq = dqn, dk = dkn;
  }
  let dHAll: Tensor;
  if (dH) {
    dHAll = dH;
    await linearT(dq, blk.q.w, { layout: blk.q.layout, out: dHAll, accumulate: true });
  } else {
    dHAll = await linearT(dq, blk.q.w, { layout: blk.q.layout, outDtype: "f32" });
  }
  await linearT(dk, blk.k.w, { layout: blk.k.layout, out: dHAll, accumulate: true });
  await linearT(dv, blk.v.w, { layout: blk.v.layout, out: dHAll, accumulate: true });
  dq.dispose(), dk.dispose(), dv.dispose();
  const dx = await normBackward(net, t.xIn, blk.ln1, dHAll);
  dHAll.dispose();
  await addInPlace(dx, dMid);
  dMid.dispose();
  return dx;
}

/**
 * Backward from dLoss/dlogits (f32 [T, V], consumed) through the head and the taped blocks: returns
 * dLoss/d(residual entering block `taped.from`), f32 [T, d], on that block's device. Releases the tape.
 */
export async function backwardFromLogits(
  net: Transformer,
  taped: TapedForward,
  dLogits: Tensor,
  b: TokenBatch,
): Promise<Tensor> {
  const dHf = await linearT(dLogits, net.lmHead.w, { layout: net.lmHead.layout, outDtype: "f32" });
  dLogits.dispose();
  let d: Tensor;
  if (taped.rows) {
    const xSel = await gatherRows(taped.xFinal, taped.rows, { outDtype: taped.xFinal.dtype });
    const dSel = await normBackward(net, xSel, net.finalNorm, dHf);
    xSel.dispose();
    d = Tensor.zeros(dSel.gpu, taped.xFinal.shape, "f32", { name: "dx" });
    await scatterAddRows(d, dSel, taped.rows);
    dSel.dispose();
  } else {
    d = await normBackward(net, taped.xFinal, net.finalNorm, dHf);
  }
  dHf.dispose();
  for (let j = taped.tapes.length - 1; j >= 0; j--) {
    const i = taped.from + j;
    d = await moveTo(d, net.deviceOf(i));
    d = await blockBackward(net, i, taped.tapes[j], d, b, taped.cache);
    disposeTape(taped.tapes[j]);
  }
  taped.xFinal.dispose();
  taped.logits.dispose();
  return d;
}
