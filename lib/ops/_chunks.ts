/**
 * Walking the row chunks of tensors: helpers every op uses so that tensors larger than one storage
 * binding work everywhere.
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
      const chunk = Math.floor(r / t.rowsPerChunk);
      end = Math.min(end, (chunk + 1) * t.rowsPerChunk);
      return { chunk, offset: (r - chunk * t.rowsPerChunk) * t.rowSize };
    });
    out.push({ row: r, rows: end - r, at });
    r = end;
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
