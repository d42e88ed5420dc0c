/**
 * keg — knowledge editing (ROME, R-ROME) on WebGPU.
 *
 * ```ts
 * import { edit, loadHparams, loadModel } from "./mod.ts";
 * const model = await loadModel("../shared/models/tiny-gpt2-counterfact", { precision: "mixed" });
 * const hp = await loadHparams("configs/R-ROME/tiny-gpt2-counterfact.yaml");
 * const r = await edit(model, hp, { prompt: "{} is located in", subject: "Angola", target_new: "Antarctica" });
 * console.log(r.report.vSteps.at(-1), r.report.rankOne.divisionFactor);
 * ```
 * @module
 */
export * from "./lib/gpu/mod.ts";
export * from "./lib/ops/mod.ts";
export * from "./lib/model/mod.ts";
export * from "./lib/edit/mod.ts";
export * from "./lib/eval/mod.ts";
