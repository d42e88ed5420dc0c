/**
 * keg — knowledge editing (ROME, R-ROME) on WebGPU.
 *
 * ```ts
 * import { Gpu, Tensor } from "./mod.ts";
 * const gpu = await Gpu.open();
 * ```
 * @module
 */
export * from "./lib/gpu/mod.ts";
export * from "./lib/ops/mod.ts";
