/**
 * The checks that tie hyper-parameters and requests to a loaded model, each in one place, run before any
 * work starts (the CLI calls them before loading statistics; the editor calls them again):
 *
 * - {@link checkEditSettings}: `layers` and `v_loss_layer` inside the model; `rewrite_module_tmp`,
 *   `layer_module_tmp`, `mlp_module_tmp`, `attn_module_tmp`, `ln_f_module` and `lm_head_module` name the
 *   modules keg edits and reads (ROME's hooks sit on the MLP down-projection, so another rewrite module is
 *   refused rather than silently replaced); context-template lengths fit the model.
 * - {@link checkRequestFits}: the longest sequence an edit runs (a context template + the prompt + the
 *   target) fits the model's positions, through the one length check of lib/model/validate.ts.
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { checkTokenCount } from "../model/validate.ts";
import type { RomeHparams } from "./hparams.ts";
import { type EditRequest, promptText, targetText } from "./request.ts";

/** Most templates per `context_template_length_params` entry (the references use 10). */
export const MAX_TEMPLATE_COUNT = 1000;

/** A module path without the wrapper prefixes checkpoints may or may not carry. */
function bare(path: string): string {
  return path.replace(/\.weight$/, "").replace(/^(transformer|model)\./, "");
}

function within(path: string, module: string): boolean {
  return bare(path).startsWith(`${bare(module)}.`);
}

/** Checks the hyper-parameters against the model (see the module doc); errors name the file and key. */
export function checkEditSettings(model: LoadedModel, hp: RomeHparams): void {
  const n = model.config.numLayers;
  const err = (key: string, msg: string) => new Error(`${hp.source}: ${key}: ${msg}`);
  if (hp.layers.length !== 1) throw err("layers", `ROME edits one layer, got [${hp.layers}]`);
  const L = hp.layers[0];
  if (L < 0 || L >= n) throw err("layers", `layer ${L} outside 0..${n - 1} (the model has ${n} layers)`);
  if (hp.vLossLayer >= n) {
    throw err("v_loss_layer", `layer ${hp.vLossLayer} outside 0..${n - 1} (the model has ${n} layers)`);
  }
  const blk = model.arch.blocks[L];
  const fill = (t: string) => t.replaceAll("{}", String(L));
  const rewrite = fill(hp.rewriteModuleTmp);
  if (bare(rewrite) !== bare(blk.mlpOut.weight)) {
    throw err(
      "rewrite_module_tmp",
      `${JSON.stringify(hp.rewriteModuleTmp)} names ${rewrite}, but ROME edits the MLP down-projection, ` +
        `which in this ${model.config.modelType} model is ${
          blk.mlpOut.weight.replace(/\.weight$/, "")
        }; keg cannot edit another module`,
    );
  }
  const inside: [string, string, string][] = [
    ["layer_module_tmp", hp.layerModuleTmp, blk.mlpOut.weight],
    ["mlp_module_tmp", hp.mlpModuleTmp, blk.mlpOut.weight],
    ["attn_module_tmp", hp.attnModuleTmp, blk.o.weight],
  ];
  for (const [key, tmp, tensor] of inside) {
    if (!within(tensor, fill(tmp))) {
      throw err(
        key,
        `${JSON.stringify(tmp)} names ${fill(tmp)}, which does not contain ${tensor} in this model`,
      );
    }
  }
  if (bare(hp.lnFModule) !== bare(model.arch.finalNorm.weight)) {
    throw err(
      "ln_f_module",
      `${JSON.stringify(hp.lnFModule)} is not this model's final norm (${model.arch.finalNorm.weight})`,
    );
  }
  const head = model.arch.lmHead.weight;
  const tied = head === model.arch.embed;
  if (bare(hp.lmHeadModule) !== bare(head) && !(tied && bare(hp.lmHeadModule) === "lm_head")) {
    throw err("lm_head_module", `${JSON.stringify(hp.lmHeadModule)} is not this model's LM head (${head})`);
  }
  for (const [length, count] of hp.contextTemplateLengthParams) {
    if (length >= model.config.maxPositions) {
      throw err(
        "context_template_length_params",
        `template length ${length} does not leave room for a prompt in the model's ${model.config.maxPositions} positions`,
      );
    }
    if (count > MAX_TEMPLATE_COUNT) {
      throw err(
        "context_template_length_params",
        `${count} templates per entry is more than ${MAX_TEMPLATE_COUNT}`,
      );
    }
  }
}

/**
 * Checks that a request's longest sequence fits the model. With the sampled `templates` the count is exact
 * (every template filled with the prompt, plus the target); before they exist, each template is taken as
 * its planned token length plus the ". " joining it to the prompt.
 */
export function checkRequestFits(
  model: LoadedModel,
  hp: RomeHparams,
  tok: Tokenizer,
  req: EditRequest,
  where: string,
  templates?: readonly string[],
): void {
  const text = promptText(req);
  const target = tok.encode(targetText(req.targetNew), { addBos: false }).length;
  let longest: number, label: string;
  if (templates) {
    longest = 0, label = "the prompt";
    for (const t of templates) {
      const n = tok.encode(t.replace("{}", () => text)).length;
      if (n > longest) {
        longest = n, label = t === "{}" ? "the prompt" : "the prompt in its longest context template";
      }
    }
  } else {
    const pre = Math.max(0, ...hp.contextTemplateLengthParams.map(([length]) => length + 1));
    longest = pre + tok.encode(text).length;
    label = pre ? `the prompt after a ${pre - 1}-token context template` : "the prompt";
  }
  // the rewriting rows hold the target's tokens but the last one (as inputs)
  checkTokenCount(model.config.maxPositions, longest + target - 1, `${where}: ${label} with the target`);
}
