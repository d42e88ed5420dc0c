/**
 * keg's GPU ops: one module per WGSL kernel family. Their plain-TS references live in lib/testing/
 * (`*_reference.ts`) and are not re-exported.
 * @module
 */
export * from "./elementwise.ts";
export * from "./matmul.ts";
export { texelKernels } from "./matmul_texel.ts";
export * from "./gemv.ts";
export * from "./outer.ts";
export * from "./covariance.ts";
export * from "./cholesky.ts";
export * from "./norm.ts";
export * from "./activation.ts";
export * from "./embedding.ts";
export * from "./loss.ts";
export * from "./attention.ts";
export * from "./rotary.ts";
export * from "./optim.ts";
export * from "./eigen.ts";
