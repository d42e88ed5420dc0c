/**
 * `keg edit`: apply ROME / R-ROME edits from the command line and show what changed.
 * @module
 */
import { type LoadedModel, loadModel } from "../model/load.ts";
import { parsePrecision } from "../model/precision.ts";
import { scoreTargets, topNext } from "../model/score.ts";
import { applyOverrides, loadHparams, type RomeHparams } from "../edit/hparams.ts";
import { autoLayerText, resolveAutoLayer } from "../edit/trace.ts";
import { type EditRequest, loadRequests, normalizeRequest, promptText, targetText } from "../edit/request.ts";
import { collectStats, loadStatsFile, type Stats } from "../edit/covariance.ts";
import { type EditResult, RomeEditor } from "../edit/rome.ts";
import { exportCheckpoint, saveEdits } from "../edit/edits_io.ts";
import { parseFlags, parseSet, required, UsageError } from "./args.ts";
import { isBatchConfig } from "./batch_detect.ts";
import { checkEditSettings, checkRequestFits } from "../edit/checks.ts";
import { checkWritable, writeFileAtomic } from "../util/fs.ts";
import { keyValueResidual, updateKey } from "../edit/update.ts";
import { Progress } from "./progress.ts";
import { profiled } from "./profile.ts";
import { profileStage } from "../gpu/profile.ts";
import { adapterReport, memoryReport } from "./report.ts";

/** Usage text. */
export const EDIT_USAGE: string =
  `keg edit --hparams <yaml> --model <dir|hub id> (--prompt P --subject S --target T | --requests F)
  --prompt P          prompt with "{}" for the subject (or containing the subject literally)
  --subject S         the subject, e.g. "LeBron James"
  --target T          the new object, e.g. "football"
  --requests F        JSON / JSONL file of requests (EasyEdit flat or CounterFact format)
  --precision P       f32 | f16 | mixed (default: the hparams' precision)
  --devices N|MAP     devices (default: the hparams' devices)
  --update U          rome | r-rome | p-rome (default: from alg_name)
  --stats FILE        covariance statistics (safetensors with mom2 [+ count]) instead of computing them
  --corpus FILES      comma-separated text files for the statistics (default: the hparams' stats_corpus)
  --set k=v,…         override hparams keys, e.g. --set v_num_grad_steps=50,layers=0
  --independent       restore the model after each request (default: edits accumulate, sequential)
  --save DIR          save the edits as safetensors deltas in DIR
  --export DIR        write the edited model as a full checkpoint (same shards and dtypes as the input)
  --json FILE         write every result as JSON
  --profile           GPU time per op and stage (timestamp queries), dispatch and readback counts
  --batch-size N      MEMIT / AlphaEdit configs (alg_name MEMIT | AlphaEdit): requests per batch; --stats then
                      takes one file per edited layer, comma-separated in layer order`;

/** Loads (or computes with progress) the statistics an editor needs. */
export async function statsFor(
  model: LoadedModel,
  hp: RomeHparams,
  opts: { stats?: string; corpus?: string },
): Promise<Stats | null> {
  if (!hp.mom2Adjustment) return null;
  checkEditSettings(model, hp);
  const layer = hp.layers[0];
  if (opts.stats) return await loadStatsFile(model, layer, opts.stats);
  const corpus = (opts.corpus ?? hp.statsCorpus)?.split(",").filter(Boolean);
  if (!corpus?.length) {
    throw new UsageError(
      `${hp.source}: mom2_adjustment needs statistics: give --stats, --corpus or stats_corpus`,
    );
  }
  const progress = new Progress(`stats layer ${layer}`, hp.mom2NSamples, 0, { unit: "seq" });
  const ac = new AbortController();
  const onSig = () => ac.abort();
  Deno.addSignalListener("SIGINT", onSig);
  try {
    const s = await collectStats(model, {
      layer,
      corpus,
      nSamples: hp.mom2NSamples,
      signal: ac.signal,
      onProgress: (done, total, tokens) => {
        progress.total = total;
        progress.tick(done - progress.done, `${tokens} tokens`);
      },
    });
    if (s.source === "computed") progress.finish();
    console.error(`statistics: ${s.count} keys (${s.source}: ${s.path})`);
    return s;
  } finally {
    Deno.removeSignalListener("SIGINT", onSig);
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

/** Prints pre/post predictions and the target's probability for a request. */
async function probe(
  model: LoadedModel,
  req: EditRequest,
  label: string,
): Promise<{ acc: number; prob: number }> {
  profileStage("probe");
  const tok = model.tokenizer!;
  const text = promptText(req);
  const targets = [tok.encode(targetText(req.targetNew), { addBos: false })];
  const labels = ["new"];
  if (req.groundTruth) {
    targets.push(tok.encode(targetText(req.groundTruth), { addBos: false })), labels.push("true");
  }
  const scores = await scoreTargets(model.net, tok, targets.map(() => text), targets);
  const [top] = await topNext(model.net, tok, [text], 5);
  const s = scores[0];
  const acc = s.argmax.filter((a, i) => a === s.targetIds[i]).length / s.targetIds.length;
  const prob = Math.exp(s.tokenLogProbs.reduce((a, b) => a + b, 0));
  console.log(
    `  ${label}: ${JSON.stringify(text)} → top: ${
      top.map((t) => `${JSON.stringify(t.text)} ${pct(t.prob)}`).join(", ")
    }`,
  );
  console.log(
    `  ${label}: ` +
      scores.map((sc, i) =>
        `P(${labels[i]} ${JSON.stringify(targets[i] === targets[0] ? req.targetNew : req.groundTruth)}) = ${
          pct(Math.exp(sc.tokenLogProbs.reduce((a, b) => a + b, 0)))
        }`
      ).join(", ") + `, rewrite acc ${pct(acc)}`,
  );
  return { acc, prob };
}

function describe(result: EditResult): string {
  const { applied: a, report: e } = result;
  const t = e.timings;
  const v = e.vSteps;
  return [
    `  layer ${a.layer} (${a.weightName}), update ${e.update}, C ${
      e.mom2Adjustment ? "from statistics" : "= I"
    }`,
    `  v*: NLL ${v[0].nll.toFixed(3)} → ${v[v.length - 1].nll.toFixed(3)} in ${v.length} forwards, ‖δ‖ ${
      v[v.length - 1].deltaNorm.toFixed(3)
    }`,
    `  division factor ${e.rankOne.divisionFactor.toPrecision(5)}, ‖ΔW‖/‖W‖ ${e.dWRel.toPrecision(4)}`,
    `  time: templates ${t.templates.toFixed(2)} s, k* ${t.kStar.toFixed(2)} s, v* ${
      t.vStar.toFixed(2)
    } s, solve ${t.solve.toFixed(3)} s, update ${t.update.toFixed(3)} s, total ${t.total.toFixed(2)} s`,
    ...e.fallbacks.map((f) => `  NaN/inf guard: ${f} was rerun with f32 activations`),
    ...e.warnings.map((w) => `  warning: ${w}`),
  ].join("\n");
}

/** Runs the command. */
export async function editCommand(args: string[]): Promise<void> {
  if (await isBatchConfig(args)) return await (await import("./batch.ts")).batchEditCommand(args);
  const v = parseFlags("edit", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    prompt: { type: "string" },
    subject: { type: "string" },
    target: { type: "string" },
    "ground-truth": { type: "string" },
    requests: { type: "string" },
    precision: { type: "string" },
    devices: { type: "string" },
    update: { type: "string" },
    stats: { type: "string" },
    corpus: { type: "string" },
    set: { type: "string" },
    independent: { type: "boolean" },
    save: { type: "string" },
    export: { type: "string" },
    json: { type: "string" },
    profile: { type: "boolean" },
  });
  let hp = await loadHparams(required("edit", v, "hparams"));
  const overrides: Record<string, unknown> = typeof v.set === "string" ? parseSet(v.set, "edit") : {};
  if (v.precision) overrides.precision = parsePrecision(String(v.precision), "--precision");
  if (v.update) overrides.update = v.update;
  if (Object.keys(overrides).length) hp = applyOverrides(hp, overrides);
  const modelName = (v.model as string | undefined) ?? hp.modelName;
  if (!modelName) throw new UsageError("edit: --model is required (or model_name in the hparams)");

  let requests: EditRequest[];
  if (v.requests) {
    requests = await loadRequests(String(v.requests));
  } else {
    const raw = {
      prompt: required("edit", v, "prompt"),
      subject: required("edit", v, "subject"),
      target_new: required("edit", v, "target"),
      ground_truth: v["ground-truth"],
    };
    requests = [normalizeRequest(raw, "command line")];
  }

  // outputs are checked before any work: a long edit never ends in "cannot write"
  if (v.save) await checkWritable(String(v.save), "--save", "dir");
  if (v.export) await checkWritable(String(v.export), "--export", "new-dir");
  if (v.json) await checkWritable(String(v.json), "--json", "file");

  const model = await loadModel(modelName, {
    precision: hp.precision,
    devices: (v.devices as string) ?? hp.devices,
  });
  try {
    const tok = model.tokenizer;
    if (!tok) throw new UsageError(`edit: ${model.dir} has no tokenizer`);
    if (hp.layersAuto) {
      hp = await resolveAutoLayer(model, hp, requests);
      console.error(`layers: auto → [${hp.layers[0]}] (${autoLayerText(hp.autoLayer!)})`);
    }
    checkEditSettings(model, hp);
    const from = v.requests ? String(v.requests) : "command line";
    requests.forEach((r, i) =>
      checkRequestFits(model, hp, tok, r, `${from}: request ${i} (${JSON.stringify(r.subject)})`)
    );
    console.error(adapterReport(model.net.devices));
    const stats = await statsFor(model, hp, { stats: v.stats as string, corpus: v.corpus as string });
    const editor = new RomeEditor(model, hp, { stats });
    const results: EditResult[] = [];
    const residuals: number[] = [];
    let successes = 0;
    await profiled(!!v.profile, model.net.devices, async () => {
      for (const [i, req] of requests.entries()) {
        console.log(
          `\n[${i + 1}/${requests.length}] ${JSON.stringify(req.subject)}: ${req.prompt} → ${
            JSON.stringify(req.targetNew)
          }`,
        );
        await probe(model, req, "pre ");
        const e = await editor.edit(req);
        results.push(e);
        console.log(describe(e));
        // the closed form of the update: the edited module maps the key to v* (rounding only)
        const r = e.report;
        const w = model.net.blocks[e.applied.layer].mlpOut;
        const residual = await keyValueResidual(w, updateKey(r.update, r.kStar, r.kPrompt), r.vStar);
        residuals.push(residual);
        console.log(`  W'k + b = v*: relative residual ${residual.toExponential(2)} (${w.w.dtype} weight)`);
        const post = await probe(model, req, "post");
        if (post.acc === 1) successes++;
        if (v.independent && i < requests.length - 1) await editor.restore();
      }
    });
    console.log(
      `\n${successes}/${requests.length} edits reach full rewrite accuracy (${hp.update}, ${hp.precision}, ${
        v.independent ? "independent" : "sequential"
      })`,
    );
    console.error(memoryReport(model.net));
    if (v.save) {
      const path = await saveEdits(
        String(v.save),
        v.independent ? results.slice(-1).map((r) => r.applied) : editor.history,
        hp.raw,
      );
      console.error(`saved ${v.independent ? 1 : editor.history.length} edit(s) to ${path}`);
    }
    if (v.export) {
      await exportCheckpoint(model, String(v.export), editor.history);
      console.error(`wrote the edited checkpoint to ${v.export}`);
    }
    if (v.json) {
      const plain = results.map(({ applied: a, report: e }, i) => ({
        kvResidual: residuals[i],
        request: a.requests[0],
        autoLayer: hp.autoLayer,
        layer: a.layer,
        weightName: a.weightName,
        update: e.update,
        rankOne: { divisionFactor: e.rankOne.divisionFactor },
        vSteps: e.vSteps,
        targetIds: e.targetIds,
        dWRel: e.dWRel,
        mom2Adjustment: e.mom2Adjustment,
        fallbacks: e.fallbacks,
        warnings: e.warnings,
        timings: e.timings,
      }));
      await writeFileAtomic(String(v.json), JSON.stringify(plain, null, 2));
    }
    editor.dispose();
  } finally {
    await model.dispose();
  }
}
