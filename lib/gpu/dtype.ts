/**
 * Element types keg stores on the GPU and the CPU-side conversions between them.
 *
 * GPU storage is `f32` or `f16`; checkpoints may also hold `bf16`, which is converted on upload.
 * @module
 */

/** A GPU storage element type. */
export type DType = "f32" | "f16";

/** Bytes per element of a GPU storage type. */
export function dtypeBytes(dtype: DType): number {
  return dtype === "f32" ? 4 : 2;
}

/** The largest finite f16 value. */
export const F16_MAX = 65504;
/** Machine epsilon of f16 (2^-10): the spacing of f16 values just above 1. */
export const F16_EPS = 2 ** -10;
/** Machine epsilon of f32 (2^-23). */
export const F32_EPS = 2 ** -23;

/** Converts f32 values to f16 (round to nearest even, as IEEE casts do). */
export function toF16(values: ArrayLike<number>): Float16Array {
  return Float16Array.from(values as ArrayLike<number>);
}

/** Converts raw bf16 bit patterns to f32 values (exact). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Rounds f32 values to bf16 bit patterns (round to nearest even; NaN stays NaN). */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Counts values whose magnitude exceeds the f16 range (they would become ±inf as f16). */
export function countF16Overflow(values: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    // values at or above 65520 round to infinity in f16
    if (v >= 65520 && Number.isFinite(values[i])) n++;
  }
  return n;
}
