/**
 * Elementwise ops: axpy, scale, dtype casts and non-finite counting (keg's NaN/inf guard).
 * @module
 */
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { grid1d, rowSegments, words } from "./_chunks.ts";

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new GpuError(op, `shape mismatch: [${a.shape}] vs [${b.shape}]`);
  }
  if (a.gpu !== b.gpu) {
    throw new GpuError(op, `tensors live on different devices (${a.gpu.label}, ${b.gpu.label})`);
  }
}

/** y += alpha · x, in place (f32 math). x and y must have the same shape and dtype. */
export async function axpy(y: Tensor, alpha: number, x: Tensor): Promise<void> {
  sameShape("axpy", x, y);
  if (x.dtype !== y.dtype) throw new GpuError("axpy", `dtype mismatch ${x.dtype} vs ${y.dtype}`);
  const pipe = await y.gpu.pipeline({ family: "elementwise", entry: "axpy", types: { ST: y.dtype } });
  for (const s of rowSegments([x, y])) {
    const n = s.rows * y.rowSize;
    y.gpu.dispatch(
      "axpy",
      pipe,
      [x.chunks[s.at[0].chunk], y.chunks[s.at[1].chunk]],
      grid1d(n),
      words(n, s.at[0].offset, s.at[1].offset, { f: alpha }),
    );
  }
}

/** y *= alpha, in place. */
export async function scale(y: Tensor, alpha: number): Promise<void> {
  const pipe = await y.gpu.pipeline({ family: "elementwise", entry: "scale", types: { ST: y.dtype } });
  for (const s of rowSegments([y])) {
    const n = s.rows * y.rowSize;
    y.gpu.dispatch(
      "scale",
      pipe,
      [null, y.chunks[s.at[0].chunk]],
      grid1d(n),
      words(n, 0, s.at[0].offset, { f: alpha }),
    );
  }
}

/** Returns a copy of `x` converted to `dtype` on the GPU (f32→f16 rounds to nearest even). */
export async function cast(x: Tensor, dtype: DType): Promise<Tensor> {
  const y = Tensor.empty(x.gpu, x.shape, dtype, { name: `${x.name}:${dtype}` });
  const pipe = await x.gpu.pipeline({
    family: "cast",
    entry: "convert",
    types: { SRC: x.dtype, DST: y.dtype },
  });
  for (const s of rowSegments([x, y])) {
    const n = s.rows * x.rowSize;
    x.gpu.dispatch(
      "cast",
      pipe,
      [x.chunks[s.at[0].chunk], y.chunks[s.at[1].chunk]],
      grid1d(n),
      words(n, s.at[0].offset, s.at[1].offset),
    );
  }
  return y;
}

/** Counts NaN and ±inf values of a tensor on the GPU. */
export async function countNonFinite(x: Tensor): Promise<number> {
  const counter = Tensor.zeros(x.gpu, [1], "f32", { name: "count_nonfinite" });
  await countNonFiniteInto(x, counter);
  const n = new Uint32Array(await x.gpu.read(counter.buffer, 0, 4))[0];
  counter.dispose();
  return n;
}

/**
 * Adds the number of NaN and ±inf values of `x` to `counter` (a one-word tensor holding a u32 count),
 * on the GPU and without a readback.
 */
export async function countNonFiniteInto(x: Tensor, counter: Tensor): Promise<void> {
  const gpu = x.gpu;
  if (counter.gpu !== gpu) throw new GpuError("count_nonfinite", "counter lives on another device");
  const pipe = await gpu.pipeline({ family: "finite", entry: "count_nonfinite", types: { ST: x.dtype } });
  for (const s of rowSegments([x])) {
    const n = s.rows * x.rowSize;
    gpu.dispatch(
      "count_nonfinite",
      pipe,
      [x.chunks[s.at[0].chunk], counter.buffer],
      grid1d(n),
      words(n, s.at[0].offset),
    );
  }
}
