/**
 * The one-call API, shaped like EasyEdit's `editor.edit(...)`:
 *
 * ```ts
 * const model = await loadModel("../shared/models/tiny-gpt2-counterfact", { precision: "mixed" });
 * const hp = await loadHparams("configs/R-ROME/tiny-gpt2-counterfact.yaml");
 * const result = await edit(model, hp, { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" });
 * await result.save("edits/angola");
 * ```
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import type { RomeHparams } from "./hparams.ts";
import { type EditRequest, normalizeRequest } from "./request.ts";
import { collectStats, loadStatsFile, type Stats } from "./covariance.ts";
import { type EditResult, RomeEditor } from "./rome.ts";
import { saveEdits } from "./edits_io.ts";

/** Options of {@link edit}. */
export interface EditOptions {
  /** Precomputed statistics, or a safetensors file with `mom2`; default: computed from hp.stats_corpus (cached). */
  stats?: Stats | string;
  /** An editor to reuse (sequential edits); a new one is made otherwise. */
  editor?: RomeEditor;
}

/** An edit's result (`applied`, `report`) with a `save(dir)` shortcut and the editor that made it. */
export interface EditOutcome extends EditResult {
  editor: RomeEditor;
  /** Saves every edit applied by this editor so far as safetensors deltas in `dir`. */
  save(dir: string): Promise<string>;
}

/** Builds an editor, loading or computing the covariance statistics when the hparams use them. */
export async function createEditor(
  model: LoadedModel,
  hp: RomeHparams,
  stats?: Stats | string,
): Promise<RomeEditor> {
  let s: Stats | null = null;
  if (hp.mom2Adjustment) {
    if (typeof stats === "string") s = await loadStatsFile(model, hp.layers[0], stats);
    else if (stats) s = stats;
    else {
      if (!hp.statsCorpus) {
        throw new Error(`${hp.source}: mom2_adjustment needs statistics: pass stats or set stats_corpus`);
      }
      s = await collectStats(model, {
        layer: hp.layers[0],
        corpus: hp.statsCorpus.split(","),
        nSamples: hp.mom2NSamples,
      });
    }
  }
  return new RomeEditor(model, hp, { stats: s });
}

/** Applies one edit (EasyEdit-style request objects are accepted as well as keg's). */
export async function edit(
  model: LoadedModel,
  hp: RomeHparams,
  request: EditRequest | Record<string, unknown>,
  opts: EditOptions = {},
): Promise<EditOutcome> {
  const req = normalizeRequest(request, "edit request");
  const editor = opts.editor ?? await createEditor(model, hp, opts.stats);
  const result = await editor.edit(req);
  return { ...result, editor, save: (dir: string) => saveEdits(dir, editor.history, hp.raw) };
}
