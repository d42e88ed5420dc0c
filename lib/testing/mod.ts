/**
 * Test-only code, kept out of keg's public surface (the root mod.ts does not export it): plain-TS f64
 * references of every kernel family (`*_reference.ts`, also used by `keg selfcheck`) and randomly
 * initialised models for tests and benchmarks (random_model.ts).
 * @module
 */
export * from "./matmul_reference.ts";
export * from "./linalg_reference.ts";
export * from "./attention_reference.ts";
export * from "./transformer_reference.ts";
export * from "./random_model.ts";
export * from "./optim_reference.ts";
