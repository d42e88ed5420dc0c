/**
 * llvmpipe (lavapipe, Mesa's CPU Vulkan) caps the loop iterations of one shader invocation: one counter per
 * invocation, shared by all its loops, stops every loop after 65,535 back-edges in all — silently, so an
 * attention kernel whose invocation walks too many keys × dims would return wrong numbers. This module
 * estimates the iterations each attention design needs (upper bounds from the loop structure of
 * shaders/attention.wgsl) so that lib/ops/attention.ts can pick the design that fits or refuse clearly.
 *
 * Every loop is counted, constant trip counts too (the compiler may unroll some: the bounds are then
 * pessimistic, never optimistic). Observed on lavapipe (LLVM 15): the row forward goes wrong between 200 and
 * 300 keys at head_dim 128 (bound: ≤ 213 fit the 90 % cap used), the row dk/dv at 130 queries × 2 heads;
 * the tiled forward between 1,000 and 1,600 keys at head_dim 128 (bound: 790) and between 700 and 800 at
 * 256 (bound: 512).
 * @module
 */
import type { AttentionTiles } from "./attention.ts";

export { hasLoopLimit, LLVMPIPE_LOOP_LIMIT } from "../gpu/device.ts";

/** What the estimates read of an attention call. */
export interface LoopShape {
  seqQ: number;
  seqKv: number;
  headDim: number;
  /** Query heads per kv head. */
  group: number;
  /** Sliding window (0: none). */
  window: number;
  /** The longest kvLength of the batch. */
  maxKvLength: number;
  tiles: AttentionTiles;
}

/** Rows per block of the row kernels (RW in the shader). */
const RW = 8;

/** Keys one block of `rows` consecutive queries may see. */
function keysSeen(s: LoopShape, rows: number): number {
  const k = Math.min(s.seqKv, s.maxKvLength);
  return s.window ? Math.min(k, s.window + rows - 1) : k;
}

/** Queries that may see some key of a block of `keys` consecutive keys. */
function queriesSeen(s: LoopShape, keys: number): number {
  return s.window ? Math.min(s.seqQ, s.window + keys - 1) : s.seqQ;
}

/**
 * Upper bound of the loop iterations one invocation of the forward (`forward`) or the heaviest backward
 * kernel (`backward`, which also reruns the forward in the tiled design) needs.
 */
export function attentionLoopIterations(
  s: LoopShape,
  design: "row" | "tiled",
  pass: "forward" | "backward",
): number {
  const hd = s.headDim, ceil = Math.ceil;
  if (design === "row") {
    const K = keysSeen(s, RW);
    const fwd = 2 * hd + K * (2 * hd + 2) + ceil(K / 8) * (hd + 1);
    if (pass === "forward") return fwd;
    const q = 2 * hd + K * (3 * hd + 4) + ceil(K / 8);
    const kv = 2 * hd + s.group * queriesSeen(s, RW) * (2 * hd + 1) + s.group;
    return Math.max(q, kv);
  }
  const { FQ, FK, BT } = s.tiles;
  // per-thread accumulator lengths (FACC, BACC in the shader)
  const facc = (s.tiles.HDM * FQ) / 64, bacc = (s.tiles.HDM * BT) / 64;
  const K = keysSeen(s, FQ);
  // per key tile: the k and v tile loads, the scores, the two softmax row loops, the accumulators
  const tile = 1 + 2 * ceil((FK * hd) / 64) + ceil((FQ * FK) / 64) * (hd + 1) + 2 * FK + 2 + facc * (FK + 1);
  const fwd = ceil((FQ * hd) / 64) + ceil(K / FK) * tile + facc;
  if (pass === "forward") return fwd;
  const load = ceil((BT * hd) / 64);
  const dq = 2 * load + ceil(keysSeen(s, BT) / BT) * (1 + 2 * load + 2 * hd + bacc * (BT + 1)) + bacc;
  const dkdv = 2 * load +
    s.group * ceil(queriesSeen(s, BT) / BT) * (1 + 3 * load + 2 * hd + 2 * bacc * (BT + 1)) +
    bacc;
  return Math.max(fwd, dq, dkdv, hd);
}
