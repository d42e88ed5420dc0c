/**
 * Per-edit time split into templates / k* / v* / solve / update, and covariance-statistics throughput
 * (tokens/s), for f32, f16 and mixed precision on ../shared/models/tiny-gpt2-counterfact.
 * Run: `deno bench -A bench/edit_bench.ts`. KEG_BENCH_STEPS sets v_num_grad_steps (default 5, so that a
 * lavapipe run finishes in a few minutes; the per-step time scales linearly).
 * The f32 row of each group is the baseline the others are compared with.
 * @module
 */
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import type { Precision } from "../lib/model/precision.ts";
import { applyOverrides, loadHparams } from "../lib/edit/hparams.ts";
import { collectStats, loadStatsFile } from "../lib/edit/covariance.ts";
import { type EditReport, RomeEditor } from "../lib/edit/rome.ts";

const MODEL = new URL("../../shared/models/tiny-gpt2-counterfact", import.meta.url).pathname;
const CORPUS = new URL("../../shared/data/corpus/wikitext-2/wiki.test.tokens", import.meta.url).pathname;
const have = await Deno.stat(MODEL).then(() => true, () => false);
if (!have) console.warn(`SKIP edit_bench: ${MODEL} not found`);
const steps = Number(Deno.env.get("KEG_BENCH_STEPS") ?? "5");
const hp = applyOverrides(
  await loadHparams(new URL("../configs/R-ROME/tiny-gpt2-counterfact.yaml", import.meta.url).pathname),
  {
    v_num_grad_steps: steps,
  },
);
const REQ = { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" };

const models = new Map<Precision, LoadedModel>();
const editors = new Map<Precision, RomeEditor>();
const last = new Map<Precision, EditReport>();

async function editorFor(p: Precision): Promise<RomeEditor> {
  let e = editors.get(p);
  if (!e) {
    const m = await loadModel(MODEL, { precision: p, quiet: true });
    models.set(p, m);
    const stats = await loadStatsFile(m, 0, `${MODEL}/rome_reference/mom2_layer0.safetensors`);
    e = new RomeEditor(m, hp, { stats });
    await e.templates();
    // warm-up edit: compiles every pipeline of this precision
    await e.edit(REQ);
    await e.restore();
    editors.set(p, e);
  }
  return e;
}

for (const p of ["f32", "f16", "mixed"] as const) {
  Deno.bench({
    name: `edit (${steps} v* steps) ${p}`,
    group: "edit",
    baseline: p === "f32",
    ignore: !have,
    n: 2,
    warmup: 0,
  }, async (b) => {
    const e = await editorFor(p);
    b.start();
    const { report: r } = await e.edit(REQ);
    b.end();
    await e.restore();
    last.set(p, r);
  });
}

for (const p of ["f32", "f16"] as const) {
  Deno.bench({
    name: `stats 64 sequences ${p}`,
    group: "stats",
    baseline: p === "f32",
    ignore: !have,
    n: 1,
    warmup: 0,
  }, async (b) => {
    const m = models.get(p) ?? await loadModel(MODEL, { precision: p, quiet: true });
    models.set(p, m);
    const dir = await Deno.makeTempDir();
    b.start();
    const t0 = performance.now();
    const s = await collectStats(m, { layer: 0, corpus: [CORPUS], nSamples: 64, dir });
    const sec = (performance.now() - t0) / 1000;
    b.end();
    console.log(
      `stats ${p}: ${s.count} keys in ${sec.toFixed(2)} s = ${(s.count / sec).toFixed(0)} tokens/s`,
    );
    s.c.dispose();
    await Deno.remove(dir, { recursive: true });
  });
}

globalThis.addEventListener("unload", () => {
  if (!last.size) return;
  const rows = [...last.entries()].map(([p, r]) => {
    const t = r.timings;
    return `| ${p} | ${t.templates.toFixed(2)} | ${t.kStar.toFixed(2)} | ${t.vStar.toFixed(2)} | ${
      (t.vStar / r.vSteps.length).toFixed(3)
    } | ${t.solve.toFixed(3)} | ${t.update.toFixed(3)} | ${t.total.toFixed(2)} | ${
      r.vSteps.at(-1)!.nll.toFixed(4)
    } |`;
  });
  console.log(
    [
      "",
      "| precision | templates s | k* s | v* s | per v* step s | solve s | update s | total s | final NLL |",
      "|---|---|---|---|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
});
