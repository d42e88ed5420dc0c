/**
 * Walking the row chunks of tensors: the one place every op gets its chunk arithmetic from, so that
 * tensors larger than one storage binding work everywhere. {@link chunkOf} locates one row,
 * {@link rowRuns} splits a row range of one tensor, {@link rowSegments} splits rows shared by several
 * tensors, {@link chunkStarts} and {@link intervals} cut an index range at chunk boundaries (matmul cuts
 * each of its dimensions this way).
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";

/** A run of whole rows lying in one chunk of every tensor involved. */
export interface Segment {
  /** First row (global) of the run. */
  row: number;
  /** Number of rows. */
  rows: number;
  /** Per tensor: chunk index and the element offset of `row` inside that chunk. */
  at: { chunk: number; offset: number }[];
}

/** The chunk holding row `row` of `t` (rows along dim 0), that row's index inside it and its element offset. */
export function chunkOf(t: Tensor, row: number): { chunk: number; local: number; offset: number } {
  const chunk = Math.floor(row / t.rowsPerChunk);
  const local = row - chunk * t.rowsPerChunk;
  return { chunk, local, offset: local * t.rowSize };
}

/** A run of rows of one tensor lying in one chunk. */
export interface RowRun {
  /** First row (global) of the run. */
  row: number;
  /** Number of rows. */
  rows: number;
  /** Chunk index. */
  chunk: number;
  /** Index of `row` inside its chunk. */
  local: number;
  /** Element offset of `row` inside its chunk. */
  offset: number;
}

/** The runs of rows [from, to) of `t` that never cross a chunk boundary, each at most `maxRows` long. */
export function rowRuns(t: Tensor, from = 0, to: number = t.rows, maxRows = Infinity): RowRun[] {
  const out: RowRun[] = [];
  for (let r = from; r < to;) {
    const at = chunkOf(t, r);
    const end = Math.min(to, (at.chunk + 1) * t.rowsPerChunk, r + maxRows);
    out.push({ row: r, rows: end - r, ...at });
    r = end;
  }
  return out;
}

/**
 * Splits rows [0, rows) of tensors that share their row count into runs that never cross a chunk
 * boundary of any of them.
 */
export function rowSegments(tensors: Tensor[], rows = tensors[0].rows): Segment[] {
  const out: Segment[] = [];
  let r = 0;
  while (r < rows) {
    let end = rows;
    const at = tensors.map((t) => {
      const { chunk, offset } = chunkOf(t, r);
      end = Math.min(end, (chunk + 1) * t.rowsPerChunk);
      return { chunk, offset };
    });
    out.push({ row: r, rows: end - r, at });
    r = end;
  }
  return out;
}

/** The rows (along dim 0) where `t`'s chunks after the first begin. */
export function chunkStarts(t: Tensor): number[] {
  const out: number[] = [];
  for (let i = 1; i < t.chunks.length; i++) out.push(i * t.rowsPerChunk);
  return out;
}

/** Splits [0, total) at the given cuts and into pieces of at most `cap`. */
export function intervals(total: number, cuts: number[], cap: number): [number, number][] {
  const pts = [...new Set([0, total, ...cuts.filter((c) => c > 0 && c < total)])].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (let i = 0; i + 1 < pts.length; i++) {
    for (let s = pts[i]; s < pts[i + 1]; s += cap) out.push([s, Math.min(pts[i + 1], s + cap)]);
  }
  return out;
}

/** Workgroup grid for `n` threads at 256 per workgroup, 2-D when the x limit (65535) would be exceeded. */
export function grid1d(n: number, perGroup = 256): [number, number] {
  const groups = Math.ceil(n / perGroup);
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/** Packs uniform words: integers as u32, `{ f: x }` as the f32 bit pattern. */
export function words(...values: (number | { f: number })[]): Uint32Array {
  const out = new Uint32Array(Math.max(4, Math.ceil(values.length / 4) * 4));
  const f = new Float32Array(out.buffer);
  values.forEach((v, i) => {
    if (typeof v === "number") {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new RangeError(`uniform word ${v} is not a u32`);
      }
      out[i] = v;
    } else {
      f[i] = v.f;
    }
  });
  return out;
}
