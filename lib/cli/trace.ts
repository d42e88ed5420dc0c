/**
 * `keg trace`: ROME's causal tracing of one prompt or of a dataset's known facts, with JSON grids, SVG
 * heatmaps, the Figure-2 roll-up (Markdown and a self-contained HTML page) and `--suggest-layer`.
 * @module
 */
import { loadModel } from "../model/load.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { parsePrecision } from "../model/precision.ts";
import { openSafetensors, type SafetensorsFile } from "../model/safetensors.ts";
import {
  answerToken,
  cleanPrediction,
  defaultWindow,
  type LayerSuggestion,
  suggestLayer,
  TRACE_KINDS,
  traceFact,
  type TraceKind,
  tracePrompt,
  type TraceResult,
} from "../edit/trace.ts";
import { embeddingStd } from "../edit/trace_noise.ts";
import { loadDataset } from "../eval/datasets/mod.ts";
import { fromJsonLine, toJsonLine } from "../eval/report.ts";
import { rollupKinds } from "../eval/trace_rollup.ts";
import { renderTraceHtml, rollupMarkdown, svgTraceHeatmap } from "../eval/trace_report.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { intFlag, parseFlags, required, UsageError } from "./args.ts";
import { Progress } from "./progress.ts";

/** Usage text. */
export const TRACE_USAGE: string =
  `keg trace --model M (--prompt "{} is located in" --subject S [--target T] | --data F [--limit N]) --out DIR
  --kind K,…          hidden,mlp,attn (default all three)
  --window W          MLP / attention window (default min(10, layers/2))
  --samples N         corrupted rows (default 10)     --seed S     noise seed (default 1, per fact)
  --noise-factor F    noise = F × std of the subjects' token embeddings (default 3)
  --noise-level X     the noise's scale directly      --noise-file F  stored noise (case_<id> tensors)
  --std-data F        dataset whose subjects give the std (default --data; else the prompt's subject)
  --suggest-layer     print the MLP layer with the largest effect at the last subject token (window 1)
  --precision P       f32 | f16 | mixed (default f32)   --devices N|MAP   --batch N  restore sets per forward
Writes DIR/trace.json (or DIR/results.jsonl, one known fact per line, resumable) with per-fact grids,
DIR/svg/<fact>_<kind>.svg heatmaps, and for --data DIR/summary.json, DIR/summary.md and DIR/report.html.`;

/** One traced fact as written to JSON (the oracle's trace.json layout). */
export interface TracedFactJson {
  case_id: number | null;
  subject: string;
  prompt: string;
  target: string | null;
  input_ids: number[];
  input_tokens: string[];
  subject_range: [number, number];
  answer_id: number;
  answer_token: string;
  correct_prediction: boolean;
  clean_argmax: number;
  high_score: number;
  low_score: number;
  low_score_per_sample: number[];
  window: number;
  scores: Partial<Record<TraceKind, number[][]>>;
}

function parseKinds(v: string | undefined): TraceKind[] {
  if (!v) return [...TRACE_KINDS];
  const out = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const k of out) {
    if (!(TRACE_KINDS as readonly string[]).includes(k)) {
      throw new UsageError(`trace: --kind: unknown kind ${JSON.stringify(k)} (hidden, mlp, attn)`);
    }
  }
  return out as TraceKind[];
}

function numFlag(v: Record<string, unknown>, name: string): number | undefined {
  if (v[name] === undefined) return undefined;
  const n = Number(v[name]);
  if (!(n > 0) || !Number.isFinite(n)) throw new UsageError(`trace: --${name} expects a positive number`);
  return n;
}

function factJson(
  tok: Tokenizer,
  q: { caseId: number | null; prompt: string; subject: string; target: string | null },
  p: ReturnType<typeof tracePrompt>,
  answerId: number,
  r: TraceResult,
): TracedFactJson {
  return {
    case_id: q.caseId,
    subject: q.subject,
    prompt: p.text,
    target: q.target,
    input_ids: p.inputIds,
    input_tokens: p.tokens,
    subject_range: p.subjectRange,
    answer_id: answerId,
    answer_token: tok.decode([answerId]),
    correct_prediction: r.correctPrediction,
    clean_argmax: r.cleanArgmax,
    high_score: r.highScore,
    low_score: r.lowScore,
    low_score_per_sample: r.lowScorePerSample,
    window: r.window,
    scores: r.scores,
  };
}

function heatmaps(f: TracedFactJson, kinds: readonly TraceKind[]): string[] {
  return kinds.filter((k) => f.scores[k]).map((k) =>
    svgTraceHeatmap(k, {
      tokens: f.input_tokens,
      subjectRange: f.subject_range,
      scores: f.scores[k]!,
      lowScore: f.low_score,
      highScore: f.high_score,
      answer: f.answer_token,
      window: f.window,
    })
  );
}

function suggestionText(s: LayerSuggestion): string {
  return `suggested edit layer: ${s.layer} (MLP indirect effect ${
    s.aie[s.layer].toFixed(4)
  } at the last subject ` +
    `token over ${s.facts} fact(s), window ${s.window}; margin ${
      s.margin.toFixed(4)
    } over layer ${s.runnerUp})`;
}

/** Runs the command. */
export async function traceCommand(args: string[]): Promise<void> {
  const v = parseFlags("trace", args, {
    model: { type: "string" },
    prompt: { type: "string" },
    subject: { type: "string" },
    target: { type: "string" },
    kind: { type: "string" },
    data: { type: "string" },
    limit: { type: "string" },
    out: { type: "string" },
    window: { type: "string" },
    samples: { type: "string" },
    seed: { type: "string" },
    "noise-factor": { type: "string" },
    "noise-level": { type: "string" },
    "noise-file": { type: "string" },
    "std-data": { type: "string" },
    "suggest-layer": { type: "boolean" },
    precision: { type: "string" },
    devices: { type: "string" },
    batch: { type: "string" },
    quiet: { type: "boolean" },
  });
  const modelName = required("trace", v, "model");
  const out = required("trace", v, "out");
  const data = v.data as string | undefined;
  if (!data && (v.prompt === undefined || v.subject === undefined)) {
    throw new UsageError("trace: give --prompt and --subject, or --data");
  }
  if (data && v.prompt !== undefined) throw new UsageError("trace: --prompt and --data exclude each other");
  const kinds = parseKinds(v.kind as string | undefined);
  const samples = intFlag("trace", v, "samples", 10);
  if (samples < 1) throw new UsageError("trace: --samples must be at least 1");
  const seed = intFlag("trace", v, "seed", 1);
  const limit = v.limit === undefined ? Infinity : intFlag("trace", v, "limit", 0);
  const batchSets = v.batch === undefined ? undefined : Math.max(1, intFlag("trace", v, "batch", 1));
  const precision = parsePrecision(String(v.precision ?? "f32"), "--precision");
  const quiet = !!v.quiet;

  const model = await loadModel(modelName, { precision, devices: (v.devices as string) ?? 1, quiet });
  const ac = new AbortController();
  const onSig = () => ac.abort();
  Deno.addSignalListener("SIGINT", onSig);
  let noiseFile: SafetensorsFile | null = null;
  try {
    const tok = model.tokenizer;
    if (!tok) throw new UsageError(`trace: ${model.dir} has no tokenizer`);
    const L = model.config.numLayers;
    const window = v.window === undefined ? defaultWindow(L) : intFlag("trace", v, "window", 1);
    if (window < 1 || window > L) {
      throw new UsageError(`trace: --window ${window} is larger than the model's ${L} layers (or < 1)`);
    }
    const records = data ? await loadDataset(data) : [];
    // Noise level: given, or noise_factor × std of the subjects' token embeddings (ROME's rule "s3").
    let level = numFlag(v, "noise-level"), stdNote: string;
    if (level === undefined) {
      const factor = numFlag(v, "noise-factor") ?? 3;
      const stdData = (v["std-data"] as string | undefined) ?? data;
      const subjects = stdData
        ? (stdData === data ? records : await loadDataset(stdData)).map((r) => r.request.subject)
        : [String(v.subject)];
      const std = await embeddingStd(model.net, tok, subjects);
      level = factor * std.std;
      stdNote = `noise ${factor} × std ${std.std.toPrecision(7)} = ${level.toPrecision(7)} (std over ${
        stdData
          ? `the token embeddings of ${std.subjects} subjects of ${stdData}, ${std.tokens} tokens`
          : `the subject's own ${std.tokens} token embeddings; --std-data F uses a dataset's subjects, as ROME does`
      })`;
    } else stdNote = `noise level ${level} (given)`;
    if (v["noise-file"]) noiseFile = await openSafetensors(String(v["noise-file"]));
    const noiseFor = async (caseId: number | null, subjectTokens: number) => {
      if (!noiseFile) return { seed, level: level! };
      // A record uses its case_<id> tensor; a single prompt the first [samples, subject tokens, d] one.
      const want = [samples, subjectTokens, model.config.hiddenSize];
      const key = caseId !== null
        ? `case_${caseId}`
        : noiseFile.names().find((n) => JSON.stringify(noiseFile!.info(n).shape) === JSON.stringify(want));
      if (!key || !noiseFile.has(key)) {
        throw new UsageError(
          `trace: ${noiseFile.path} has no ${caseId !== null ? `tensor case_${caseId}` : `[${want}] tensor`}`,
        );
      }
      return (await noiseFile.readFloat(key, "f32")).data;
    };
    const settings = [
      `model ${model.dir} (${model.config.modelType}, ${L} layers), precision ${precision}, ${model.net.devices.length} device(s)`,
      `${samples} corrupted rows + 1 clean row; ${
        noiseFile ? `noise from ${noiseFile.path}` : `seed ${seed} per fact`
      }; ${stdNote}`,
      `MLP / attention window ${window}; kinds ${kinds.join(", ")}`,
    ];
    for (const s of settings) if (!quiet) console.error(s);
    await Deno.mkdir(`${out}/svg`, { recursive: true });

    const traceOne = async (
      q: { caseId: number | null; prompt: string; subject: string; target: string | null },
      where: string,
      knownOnly: boolean,
    ): Promise<TracedFactJson | null> => {
      const p = tracePrompt(tok, q.prompt, q.subject, { where });
      const clean = await cleanPrediction(model.net, p.inputIds);
      const answerId = q.target !== null ? answerToken(tok, q.target) : clean;
      if (clean !== answerId) {
        if (knownOnly) return null;
        console.error(
          `${where}: the model does not predict ${
            JSON.stringify(tok.decode([answerId]))
          } when clean (it predicts ${
            JSON.stringify(tok.decode([clean]))
          }); tracing the given target anyway (ROME: correct_prediction = false)`,
        );
      }
      const r = await traceFact(model.net, { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId }, {
        kinds,
        samples,
        window,
        noise: await noiseFor(q.caseId, p.subjectRange[1] - p.subjectRange[0]),
        batchSets,
        signal: ac.signal,
      });
      return factJson(tok, q, p, answerId, r);
    };
    const writeSvgs = async (name: string, f: TracedFactJson) => {
      const svgs = heatmaps(f, kinds);
      for (const [i, k] of kinds.filter((k) => f.scores[k]).entries()) {
        await writeFileAtomic(`${out}/svg/${name}_${k}.svg`, svgs[i]);
      }
      return svgs;
    };

    if (!data) {
      const q = {
        caseId: null,
        prompt: String(v.prompt),
        subject: String(v.subject),
        target: (v.target as string | undefined) ?? null,
      };
      const f = (await traceOne(q, "--prompt/--subject", false))!;
      await writeFileAtomic(`${out}/trace.json`, JSON.stringify({ settings, fact: f }, null, 1) + "\n");
      const svgs = await writeSvgs("fact", f);
      let suggestion: string | undefined;
      if (v["suggest-layer"]) {
        suggestion = suggestionText(
          await suggestLayer(model.net, tok, [{ ...q, target: q.target ?? undefined }], { level, seed }),
        );
        console.log(suggestion);
      }
      await writeFileAtomic(
        `${out}/report.html`,
        renderTraceHtml({
          title: `Causal trace: ${f.prompt}`,
          settings,
          rollups: {},
          window,
          facts: [{ caption: `${f.prompt} → ${f.answer_token}`, svgs }],
          suggestion,
        }),
      );
      console.log(
        `high ${f.high_score.toFixed(4)}, low ${
          f.low_score.toFixed(4)
        }; wrote ${out}/trace.json, ${out}/svg/, ${out}/report.html`,
      );
      return;
    }

    // A dataset: known facts only (ROME's read_knowlege), appended one per line; a rerun resumes.
    const resultsPath = `${out}/results.jsonl`;
    const done: TracedFactJson[] = [];
    const skipped: number[] = [];
    try {
      for (const line of (await Deno.readTextFile(resultsPath)).split("\n")) {
        if (!line.trim()) continue;
        const row = fromJsonLine(line) as { skipped?: number } & TracedFactJson;
        if (row.skipped !== undefined) skipped.push(row.skipped);
        else done.push(row);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const seen = new Set<number>([...done.map((f) => f.case_id!), ...skipped]);
    const target = Math.min(limit, records.length);
    const progress = new Progress("trace", Number.isFinite(limit) ? target : records.length, done.length, {
      unit: "fact",
      quiet,
    });
    let interrupted = false;
    const file = await Deno.open(resultsPath, { append: true, create: true });
    try {
      for (const [i, rec] of records.entries()) {
        if (done.length >= limit) break;
        if (seen.has(rec.caseId)) continue;
        if (ac.signal.aborted) break;
        const q = {
          caseId: rec.caseId,
          prompt: rec.request.prompt,
          subject: rec.request.subject,
          target: rec.request.groundTruth,
        };
        let f: TracedFactJson | null;
        try {
          f = await traceOne(q, `${data} record ${i} (case ${rec.caseId})`, true);
        } catch (e) {
          if (ac.signal.aborted) break;
          throw e;
        }
        const line = f ? toJsonLine(f) : toJsonLine({ skipped: rec.caseId });
        await file.write(new TextEncoder().encode(line + "\n"));
        if (f) done.push(f), progress.tick(1, `case ${rec.caseId}`);
        else skipped.push(rec.caseId);
      }
    } finally {
      file.close();
      interrupted = ac.signal.aborted;
    }
    if (!interrupted) progress.finish();
    const rollups = rollupKinds(done.map((f) => ({
      subjectRange: f.subject_range,
      highScore: f.high_score,
      lowScore: f.low_score,
      scores: f.scores,
    })));
    let suggestion: string | undefined, sug: LayerSuggestion | undefined;
    if (v["suggest-layer"] && done.length && !interrupted) {
      sug = await suggestLayer(
        model.net,
        tok,
        done.map((f) => ({ prompt: f.prompt, subject: f.subject, target: f.target ?? undefined })),
        { level, seed, samples },
      );
      suggestion = suggestionText(sug);
      console.log(suggestion);
    }
    const notes = [
      `${done.length} known fact(s) traced; ${skipped.length} record(s) skipped because the clean model does not predict their answer`,
      ...(interrupted
        ? ["interrupted (Ctrl-C): the roll-up covers the facts finished so far; rerun to resume"]
        : []),
    ];
    const md = [
      `# Causal tracing`,
      "",
      ...settings.map((s) => `- ${s}`),
      ...notes.map((s) => `- ${s}`),
      "",
      ...(["hidden", "mlp", "attn"] as const).filter((k) => rollups[k]).map((k) =>
        rollupMarkdown(k, rollups[k]!, window) + "\n"
      ),
      ...(suggestion ? [suggestion, ""] : []),
    ].join("\n");
    await writeFileAtomic(
      `${out}/summary.json`,
      JSON.stringify({ settings, notes, window, summary: rollups, suggestion: sug ?? null }, null, 1) + "\n",
    );
    await writeFileAtomic(`${out}/summary.md`, md);
    const shown: { caption: string; svgs: string[] }[] = [];
    for (const f of done) {
      const svgs = await writeSvgs(`case_${f.case_id}`, f);
      if (shown.length < 6) {
        shown.push({ caption: `case ${f.case_id}: ${f.prompt} → ${f.answer_token}`, svgs });
      }
    }
    await writeFileAtomic(
      `${out}/report.html`,
      renderTraceHtml({
        title: `Causal tracing of ${data}`,
        settings,
        rollups,
        window,
        facts: shown,
        suggestion,
        notes,
      }),
    );
    if (!quiet) console.log(md);
    console.error(
      `wrote ${resultsPath}, ${out}/summary.json, ${out}/summary.md, ${out}/report.html, ${out}/svg/`,
    );
  } finally {
    Deno.removeSignalListener("SIGINT", onSig);
    await noiseFile?.close();
    await model.dispose();
  }
}
