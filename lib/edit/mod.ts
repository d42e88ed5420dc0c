/**
 * keg's editing layer: EasyEdit-compatible hparams and requests, ROME / R-ROME / p-ROME, covariance
 * statistics and saved edits.
 * @module
 */
export * from "./hparams.ts";
export * from "./request.ts";
export * from "./lookup.ts";
export * from "./templates.ts";
export * from "./k_star.ts";
export * from "./v_star.ts";
export * from "./update.ts";
export * from "./covariance.ts";
export * from "./stats_shards.ts";
export * from "./rome.ts";
export * from "./applied.ts";
export * from "./checks.ts";
export * from "./edits_io.ts";
export * from "./api.ts";
export * from "./plan.ts";
export * from "./trace.ts";
export * from "./trace_noise.ts";
export * from "./trace_forward.ts";
export * from "./memit_hparams.ts";
export * from "./memit_keys.ts";
export * from "./memit_solve.ts";
export * from "./null_space.ts";
export * from "./memit.ts";
