/**
 * Evaluation: dataset loaders (EasyEdit / ROME CounterFact, ZsRE, MQuAKE, KnowEdit), EasyEdit and
 * ROME-paper metrics, the independent and sequential protocols, and the summaries and reports.
 *
 * ```ts
 * const records = await loadDataset("../shared/data/datasets/counterfact-rome/counterfact.json", { limit: 20 });
 * const pre = await evaluatePhase(model, records[0]);
 * ```
 * @module
 */
export * from "./datasets/mod.ts";
export * from "./metrics.ts";
export * from "./protocol.ts";
export * from "./report.ts";
export * from "./checks.ts";
export * from "./trace_rollup.ts";
export * from "./trace_report.ts";
export * from "./batch_protocol.ts";
