/**
 * Up-front checks of an evaluation's records against the model: every edit request (through
 * lib/edit/checks.ts) and every scored prompt with its answer must fit the model's positions, so that an
 * over-long record fails before the run starts rather than being scored on clamped positions.
 * @module
 */
import type { LoadedModel } from "../model/load.ts";
import { checkTokenCount } from "../model/validate.ts";
import type { RomeHparams } from "../edit/hparams.ts";
import { checkRequestFits } from "../edit/checks.ts";
import { type EvalRecord, fillTemplate } from "./datasets/mod.ts";
import { recordRequests, toEditorRequest } from "./protocol.ts";

/** The (prompt, answer) pairs a record scores. */
function scoredPairs(r: EvalRecord): [string, string][] {
  const req = r.request;
  const out: [string, string][] = [];
  const answers = [req.targetNew, ...(req.groundTruth === null ? [] : [req.groundTruth])];
  for (const a of answers) {
    out.push([fillTemplate(req.prompt, req.subject), a]);
    for (const p of [...r.rephrasePrompts, ...r.neighborhoodPrompts]) out.push([p, a]);
  }
  for (const l of [...r.localityPrompts, ...r.portability]) out.push([l.prompt, l.groundTruth]);
  const mh = r.multiHop;
  if (mh) {
    for (const q of mh.questions) for (const a of [mh.newAnswer, ...mh.newAnswerAliases]) out.push([q, a]);
  }
  return out;
}

/** Checks every record of a run; `source` names the dataset file in errors. */
export function checkRecordsFit(
  model: LoadedModel,
  hp: RomeHparams,
  records: readonly EvalRecord[],
  source: string,
): void {
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${model.dir}: evaluation needs a tokenizer`);
  const P = model.config.maxPositions;
  records.forEach((r, i) => {
    const where = `${source}: record ${i} (case ${r.caseId})`;
    for (const q of recordRequests(r)) checkRequestFits(model, hp, tok, toEditorRequest(q, r.caseId), where);
    for (const [p, a] of scoredPairs(r)) {
      checkTokenCount(
        P,
        tok.encode(`${p} ${a}`).length,
        `${where}: prompt ${JSON.stringify(p.slice(0, 60))} with its answer`,
      );
    }
  });
}
