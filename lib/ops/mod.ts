/**
 * keg's GPU ops: one module per WGSL kernel family.
 * @module
 */
export * from "./elementwise.ts";
