/**
 * f32 vs f16 vs mixed precision on the fact-knowing tiny GPT-2 (../shared/models/tiny-gpt2-counterfact):
 * the same CounterFact records edited with the tuned R-ROME config (configs/R-ROME/tiny-gpt2-counterfact-
 * tuned.yaml), the oracle's covariance and the oracle's 21 context templates (so that only the storage
 * precision differs between the columns), each edit evaluated and undone (EasyEdit's independent protocol).
 *
 * Run: `deno bench -A bench/precision_bench.ts`. Each `deno bench` iteration is one edit plus its
 * post-edit evaluation (iterations cycle through the records); once every bench has run, one table prints
 * ES / PS / NS / S (ROME, ×100), rewrite / rephrase accuracy and locality (EasyEdit, %), seconds per edit
 * and NaN fallbacks side by side, with the largest gap to f32. Records: KEG_BENCH_RECORDS (comma-separated
 * indices into the CounterFact sample; default 10,11,12, outside the oracle's records 0–9). Skipped with a
 * message when ../shared is missing.
 * @module
 */
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import type { Precision } from "../lib/model/precision.ts";
import { applyOverrides, loadHparams } from "../lib/edit/hparams.ts";
import { loadStatsFile } from "../lib/edit/covariance.ts";
import { RomeEditor } from "../lib/edit/rome.ts";
import { type EvalRecord, loadDataset } from "../lib/eval/datasets/mod.ts";
import {
  diagnosticsOf,
  type EditDiagnostics,
  evaluatePhase,
  type PhaseEval,
  type RecordResult,
  toEditorRequest,
} from "../lib/eval/protocol.ts";
import { buildSummary, type EvalSummary } from "../lib/eval/report.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const MODEL = `${SHARED}models/tiny-gpt2-counterfact`;
const DATA = `${SHARED}data/datasets/counterfact-rome/counterfact.json`;
const STATS = `${MODEL}/rome_reference/mom2_layer0.safetensors`;
const ORACLE = `${MODEL}/rome_reference/oracle.json`;
const HPARAMS = new URL("../configs/R-ROME/tiny-gpt2-counterfact-tuned.yaml", import.meta.url).pathname;
const PRECISIONS: Precision[] = ["f32", "f16", "mixed"];
const INDICES = (Deno.env.get("KEG_BENCH_RECORDS") ?? "10,11,12").split(",").map((s) => Number(s.trim()));

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

interface PrecisionState {
  model: LoadedModel;
  editor: RomeEditor;
  pre: Map<number, PhaseEval>;
  results: Map<number, RecordResult>;
  calls: number;
}

const missing = [MODEL, DATA, STATS, ORACLE].filter((p) => !exists(p));
if (missing.length) {
  console.warn(`precision_bench: SKIP: ../shared is missing (${missing.join(", ")})`);
  Deno.bench({ name: "precision (skipped: ../shared missing)", ignore: true, fn() {} });
} else {
  const all = await loadDataset(DATA);
  const records: EvalRecord[] = INDICES.map((i) => {
    if (!all[i]) throw new Error(`KEG_BENCH_RECORDS: no record ${i} (the sample has ${all.length})`);
    return all[i];
  });
  const templates = (JSON.parse(await Deno.readTextFile(ORACLE)) as { context_templates: string[] })
    .context_templates;
  const baseHp = await loadHparams(HPARAMS);
  const states = new Map<Precision, Promise<PrecisionState>>();
  /** States that finished opening (the unload handler is synchronous). */
  const finished = new Map<Precision, { state: PrecisionState }>();

  const open = (p: Precision): Promise<PrecisionState> => {
    let s = states.get(p);
    if (!s) {
      s = (async () => {
        const hp = applyOverrides(baseHp, { precision: p });
        const model = await loadModel(MODEL, { precision: p, quiet: true });
        const stats = await loadStatsFile(model, hp.layers[0], STATS);
        const editor = new RomeEditor(model, hp, { stats, templates });
        const state: PrecisionState = { model, editor, pre: new Map(), results: new Map(), calls: 0 };
        finished.set(p, { state });
        return state;
      })();
      states.set(p, s);
    }
    return s;
  };

  for (const p of PRECISIONS) {
    Deno.bench({
      name: `edit + evaluate one CounterFact record (${p})`,
      group: "precision",
      baseline: p === "f32",
      n: 1,
      warmup: 0,
      async fn(b) {
        const st = await open(p);
        const k = st.calls++ % records.length;
        const rec = records[k];
        let pre = st.pre.get(k);
        if (!pre) st.pre.set(k, pre = await evaluatePhase(st.model, rec));
        st.model.net.devices.forEach((g) => g.resetPeak());
        b.start();
        let diag: EditDiagnostics;
        let error: string | undefined;
        const t0 = performance.now();
        try {
          diag = diagnosticsOf(await st.editor.edit(toEditorRequest(rec.request, rec.caseId)));
        } catch (e) {
          error = (e as Error).message;
          diag = {
            subject: rec.request.subject,
            targetNew: rec.request.targetNew,
            layer: st.editor.layer,
            weightName: st.editor.weight.name,
            update: st.editor.hp.update,
            divisionFactor: NaN,
            dWRel: NaN,
            vNll: [NaN, NaN],
            vForwards: 0,
            fallbacks: [],
            warnings: [],
            timings: {
              templates: 0,
              kStar: 0,
              vStar: 0,
              solve: 0,
              update: 0,
              total: (performance.now() - t0) / 1000,
            },
            error,
          };
        }
        const t1 = performance.now();
        const post = await evaluatePhase(st.model, rec, { reference: pre.localityIds });
        b.end();
        const t2 = performance.now();
        if (st.editor.history.length) await st.editor.restore();
        const r: RecordResult = {
          index: INDICES[k],
          caseId: rec.caseId,
          format: rec.format,
          request: rec.request,
          protocol: "independent",
          pre: pre.metrics,
          post: post.metrics,
          edits: [diag],
          time: (t1 - t0) / 1000,
          evalSeconds: (t2 - t1) / 1000,
          memory: st.model.net.devices.map((g) => {
            const m = g.memory();
            return { device: g.label, liveBytes: m.liveBytes, peakBytes: m.peakBytes };
          }),
        };
        if (error !== undefined) r.error = error;
        st.results.set(k, r);
      },
    });
  }

  // deno bench has run every bench when the module unloads: print the comparison once
  globalThis.addEventListener("unload", () => {
    const rows = PRECISIONS.filter((p) => finished.has(p)).map((p) => {
      const f = finished.get(p)!;
      const results = [...f.state.results.values()].sort((a, b) => a.index - b.index);
      const overflow = Object.values(f.state.model.f16Overflow).reduce((a, b) => a + b, 0);
      return { p, s: buildSummary(results), overflow };
    });
    if (rows.length) console.log(table(rows));
  });
}

function fmt(x: number | undefined, d = 2): string {
  return x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d);
}

function table(rows: { p: Precision; s: EvalSummary; overflow: number }[]): string {
  const pct = (x?: number) => (x === undefined ? undefined : 100 * x);
  const locOf = (s: EvalSummary) => {
    const l = s.easyedit.post.locality;
    const v = l ? Object.values(l) : [];
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
  };
  const cols: [string, (s: EvalSummary) => number | undefined][] = [
    ["ES", (s) => s.rome.post_rewrite_success?.[0]],
    ["PS", (s) => s.rome.post_paraphrase_success?.[0]],
    ["NS", (s) => s.rome.post_neighborhood_success?.[0]],
    ["S", (s) => s.rome.post_score?.[0]],
    ["rewrite_acc", (s) => pct(s.easyedit.post.rewrite_acc)],
    ["rephrase_acc", (s) => pct(s.easyedit.post.rephrase_acc)],
    ["locality", (s) => pct(locOf(s))],
  ];
  const head = [
    "precision",
    "records",
    ...cols.map((c) => c[0]),
    "s/edit",
    "NaN fallbacks",
    "failed",
    "f16 overflow",
  ];
  const lines = [
    "",
    `precision comparison: tiny-gpt2-counterfact, ${
      HPARAMS.split("/").slice(-2).join("/")
    }, oracle templates, CounterFact records ${INDICES.join(",")} (post-edit; ROME ×100, EasyEdit %)`,
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
  ];
  for (const { p, s, overflow } of rows) {
    lines.push(
      `| ${
        [
          p,
          String(s.num_cases),
          ...cols.map(([, f]) => fmt(f(s))),
          fmt(s.diagnostics.timing.editSeconds[0]),
          String(s.diagnostics.fallbacks),
          String(s.diagnostics.failed),
          String(overflow),
        ].join(" | ")
      } |`,
    );
  }
  const ref = rows.find((r) => r.p === "f32");
  if (ref) {
    for (const r of rows) {
      if (r === ref) continue;
      const gaps = cols.slice(0, 3).map(([name, f]) =>
        [name, Math.abs((f(r.s) ?? NaN) - (f(ref.s) ?? NaN))] as const
      );
      const worst = Math.max(...gaps.map((g) => g[1]));
      lines.push(
        `${r.p} vs f32: |Δ| ${gaps.map(([n, g]) => `${n} ${fmt(g)}`).join(", ")} → ${
          worst <= 1 ? "within 1 point" : `NOT within 1 point (${fmt(worst)})`
        }${r.s.diagnostics.fallbacks ? `, ${r.s.diagnostics.fallbacks} NaN fallback(s)` : ", no NaN"}`,
      );
    }
  }
  return lines.join("\n");
}
