/**
 * R-ROME on a randomly initialised Llama-2-7B-shaped model in f16 on one device (issue 5's goal: ≤ 1 s
 * per edit and ≤ 16 GB peak GPU memory; EasyEdit needs 31 GB). The weights are generated on the GPU
 * (lib/testing/random_model.ts), the hyper-parameters are configs/R-ROME/llama-2-7b.yaml's (layer 5, 25 v* steps,
 * mom2_adjustment false), the tokenizer is the synthetic byte tokenizer. Three groups:
 * - `edit`: the config as is — per-edit time split (templates / k* / v* / solve / update) and peak memory;
 * - `edit-mom2`: the same with mom2_adjustment true on a random SPD covariance C = XᵀX/n + I of the
 *   edit layer (11008²; its Cholesky factor is cached by the editor, as for a real model's statistics);
 * - `cholesky`: a timed Cholesky factorisation of that 11008² matrix.
 *
 * Run: `deno bench -A bench/edit_7b_bench.ts` (`./keg deno bench -A bench/edit_7b_bench.ts`).
 * It SKIPs unless the adapter is a real GPU; environment:
 * - KEG_BENCH_7B=1: run on a CPU adapter (lavapipe) too;
 * - KEG_BENCH_7B_LAYERS=n: fewer layers (smoke runs); with n ≤ 5 the edit layer becomes max(0, n − 2)
 *   and v_loss_layer n − 1;
 * - KEG_BENCH_7B_DIMS=hidden,intermediate,layers,vocab[,heads]: other dims, e.g. `64,172,2,300`;
 * - KEG_BENCH_STEPS: v_num_grad_steps (default: the config's);
 * - KEG_BENCH_7B_EDITS: measured edits per group (default 2; each follows a warm-up edit);
 * - KEG_BENCH_7B_MOM2=0: skip the `edit-mom2` and `cholesky` groups;
 * - KEG_BENCH_7B_MODEL=llama-3-8b | qwen2.5-7b: that shape of lib/testing/random_configs.ts (vocab 128,256,
 *   d_ff 14,336, GQA / vocab 152,064, d_ff 18,944, q/k/v biases) with its configs/R-ROME file instead of
 *   Llama-2-7B (KEG_BENCH_7B_LAYERS still applies; KEG_BENCH_7B_DIMS is ignored).
 * Every measured edit prints one line at once (so a run cut short still reports), and a table at exit.
 * @module
 */
import { Gpu } from "../lib/gpu/device.ts";
import { choleskyFactor } from "../lib/ops/cholesky.ts";
import type { LoadedModel } from "../lib/model/load.ts";
import { RANDOM_7B_CONFIGS, randomCovariance, randomModel } from "../lib/testing/random_model.ts";
import { applyOverrides, loadHparams, type RomeHparams } from "../lib/edit/hparams.ts";
import type { Stats } from "../lib/edit/covariance.ts";
import { type EditReport, RomeEditor } from "../lib/edit/rome.ts";

const GOAL_SECONDS = 1;
const GOAL_BYTES = 16e9;
const GB = 1e9;
const env = (k: string) => Deno.env.get(k) ?? "";

function dims(): { hidden: number; inter: number; layers: number; vocab: number; heads: number } {
  const d = { hidden: 4096, inter: 11008, layers: 32, vocab: 32000, heads: 32 };
  const spec = env("KEG_BENCH_7B_DIMS");
  if (PRESET) {
    const p = PRESET as Record<string, number>;
    [d.hidden, d.inter, d.layers, d.vocab, d.heads] = [
      p.hidden_size,
      p.intermediate_size,
      p.num_hidden_layers,
      p.vocab_size,
      p.num_attention_heads,
    ];
  } else if (spec) {
    const v = spec.split(",").map((s) => Number(s.trim()));
    if (v.length < 4 || v.length > 5 || !v.every((x) => Number.isInteger(x) && x > 0)) {
      throw new Error(
        `KEG_BENCH_7B_DIMS must be hidden,intermediate,layers,vocab[,heads] (positive integers), got ${spec}`,
      );
    }
    [d.hidden, d.inter, d.layers, d.vocab] = v;
    d.heads = v[4] ?? (d.hidden % 128 === 0 ? d.hidden / 128 : 1);
  }
  if (env("KEG_BENCH_7B_LAYERS")) {
    const n = Number(env("KEG_BENCH_7B_LAYERS"));
    if (!Number.isInteger(n) || n < 1) throw new Error(`KEG_BENCH_7B_LAYERS must be ≥ 1, got ${n}`);
    d.layers = n;
  }
  return d;
}

const MODEL = env("KEG_BENCH_7B_MODEL");
if (MODEL && !["llama-3-8b", "qwen2.5-7b"].includes(MODEL)) {
  throw new Error(`KEG_BENCH_7B_MODEL must be llama-3-8b or qwen2.5-7b, got ${MODEL}`);
}
const PRESET = MODEL ? RANDOM_7B_CONFIGS[MODEL] : null;
const D = dims();
const CONFIG = PRESET ? { ...PRESET, num_hidden_layers: D.layers } : {
  model_type: "llama",
  architectures: ["LlamaForCausalLM"],
  hidden_size: D.hidden,
  intermediate_size: D.inter,
  num_hidden_layers: D.layers,
  num_attention_heads: D.heads,
  num_key_value_heads: D.heads,
  vocab_size: D.vocab,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 4096,
  rope_theta: 10000,
  hidden_act: "silu",
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "float16",
};
const EDITS = Number(env("KEG_BENCH_7B_EDITS") || "2");
const MOM2 = env("KEG_BENCH_7B_MOM2") !== "0";
const REQ = { prompt: "{} is located in", subject: "Angola", targetNew: "Antarctica" };

// ---- skip unless a real GPU (or forced)
let gpu: Gpu | null = null;
let skip = "";
try {
  gpu = await Gpu.open({ quiet: true });
  if (gpu.isCpuAdapter && env("KEG_BENCH_7B") !== "1") {
    skip = `adapter "${gpu.report.description}" is a CPU implementation (set KEG_BENCH_7B=1 to run anyway)`;
  } else if (!gpu.f16) {
    skip = `adapter "${gpu.report.description}" lacks shader-f16 (the bench measures f16 storage)`;
  }
} catch (e) {
  skip = `no WebGPU adapter: ${(e as Error).message.split("\n")[0]}`;
}
if (skip) {
  console.warn(`SKIP edit_7b_bench: ${skip}`);
  await gpu?.destroy();
  gpu = null;
}

const hp: RomeHparams = await (async () => {
  const file = MODEL === "llama-3-8b" ? "llama3-8b" : MODEL === "qwen2.5-7b" ? "qwen2.5-7b" : "llama-2-7b";
  const base = await loadHparams(new URL(`../configs/R-ROME/${file}.yaml`, import.meta.url).pathname);
  const o: Record<string, unknown> = { precision: "f16" };
  if (D.layers <= base.layers[0]) o.layers = [Math.max(0, D.layers - 2)];
  if (D.layers <= base.vLossLayer) o.v_loss_layer = D.layers - 1;
  if (env("KEG_BENCH_STEPS")) o.v_num_grad_steps = Number(env("KEG_BENCH_STEPS"));
  return applyOverrides(base, o);
})();

let model: LoadedModel | null = null;
let peakSeen = 0;
const rows: { group: string; r: EditReport; peak: number }[] = [];
const extra: string[] = [];

function peakNow(): number {
  const m = gpu!.memory();
  peakSeen = Math.max(peakSeen, m.peakBytes);
  return m.peakBytes;
}

async function getModel(): Promise<LoadedModel> {
  if (model) return model;
  const t0 = performance.now();
  model = await randomModel(CONFIG, { precision: "f16", gpus: [gpu!], seed: 0, quiet: true });
  const sec = (performance.now() - t0) / 1000;
  const live = gpu!.memory().liveBytes;
  peakNow();
  const line =
    `model: ${
      MODEL || "Llama"
    } ${D.hidden}/${D.inter}/${D.layers} layers/${D.heads} heads/vocab ${D.vocab} f16 on ` +
    `"${gpu!.report.description}": ${(live / GB).toFixed(2)} GB of weights generated in ${sec.toFixed(1)} s`;
  console.log(line);
  extra.push(line);
  return model;
}

const editors = new Map<string, RomeEditor>();

async function editorFor(group: string): Promise<RomeEditor> {
  let e = editors.get(group);
  if (e) return e;
  const m = await getModel();
  let stats: Stats | null = null;
  let h = hp;
  if (group === "edit-mom2") {
    const c = await randomCovariance(gpu!, D.inter, { seed: 1, samples: Math.min(1024, D.inter) });
    stats = { c, count: Math.min(1024, D.inter), source: "computed", path: "random SPD (XᵀX/n + I)" };
    h = applyOverrides(hp, { mom2_adjustment: true });
  }
  e = new RomeEditor(m, h, { stats });
  const t0 = performance.now();
  await e.templates();
  await e.edit(REQ); // warm-up: compiles every pipeline, reads ‖W‖, factors C (edit-mom2)
  await e.restore();
  console.log(
    `${group}: warm-up (templates, pipelines, first edit) ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  editors.set(group, e);
  return e;
}

function report(group: string, r: EditReport, peak: number): void {
  rows.push({ group, r, peak });
  const t = r.timings;
  console.log(
    `${group}: total ${t.total.toFixed(3)} s (templates ${t.templates.toFixed(3)}, k* ${
      t.kStar.toFixed(3)
    }, ` +
      `v* ${t.vStar.toFixed(3)} = ${r.vSteps.length} steps, solve ${t.solve.toFixed(3)}, update ${
        t.update.toFixed(3)
      }), peak ${(peak / GB).toFixed(2)} GB, final NLL ${r.vSteps.at(-1)!.nll.toFixed(4)}`,
  );
}

for (const group of ["edit", "edit-mom2"]) {
  Deno.bench({
    name: `R-ROME ${
      group === "edit" ? "(llama-2-7b.yaml)" : "(mom2_adjustment, random SPD C)"
    } ${hp.vNumGradSteps} v* steps f16`,
    group,
    ignore: !gpu || (group === "edit-mom2" && !MOM2),
    n: EDITS,
    warmup: 0,
  }, async (b) => {
    const e = await editorFor(group);
    peakNow();
    gpu!.resetPeak();
    b.start();
    const { report: r } = await e.edit(REQ);
    b.end();
    report(group, r, peakNow());
    await e.restore();
  });
}

Deno.bench({
  name: `cholesky ${D.inter}² random SPD f32`,
  group: "cholesky",
  ignore: !gpu || !MOM2,
  n: 1,
  warmup: 0,
}, async (b) => {
  const c = await randomCovariance(gpu!, D.inter, { seed: 2, samples: Math.min(1024, D.inter) });
  peakNow();
  gpu!.resetPeak();
  b.start();
  const t0 = performance.now();
  const f = await choleskyFactor(c);
  await gpu!.sync();
  const sec = (performance.now() - t0) / 1000;
  b.end();
  const line = `cholesky ${D.inter}²: ${sec.toFixed(3)} s, peak ${(peakNow() / GB).toFixed(2)} GB`;
  console.log(line);
  extra.push(line);
  f.dispose();
  c.dispose();
});

globalThis.addEventListener("unload", () => {
  if (!rows.length && !extra.length) return;
  const lines = rows.map(({ group, r, peak }) => {
    const t = r.timings;
    return `| ${group} | ${t.templates.toFixed(3)} | ${t.kStar.toFixed(3)} | ${t.vStar.toFixed(3)} | ${
      (t.vStar / r.vSteps.length).toFixed(4)
    } | ${t.solve.toFixed(3)} | ${t.update.toFixed(3)} | ${t.total.toFixed(3)} | ${(peak / GB).toFixed(2)} |`;
  });
  const best = rows.filter((x) => x.group === "edit").map((x) => x.r.timings.total);
  const fastest = best.length ? Math.min(...best) : NaN;
  console.log(
    [
      "",
      ...extra,
      "| group | templates s | k* s | v* s | per v* step s | solve s | update s | total s | peak GB |",
      "|---|---|---|---|---|---|---|---|---|",
      ...lines,
      `goal ≤ ${GOAL_SECONDS} s per edit (llama-2-7b.yaml): ${
        best.length
          ? `${fastest.toFixed(3)} s — ${fastest <= GOAL_SECONDS ? "MET" : "NOT MET"}`
          : "not measured"
      }`,
      `goal ≤ ${GOAL_BYTES / GB} GB peak GPU memory (storage buffers, whole run): ${
        (peakSeen / GB).toFixed(2)
      } GB — ${peakSeen <= GOAL_BYTES ? "MET" : "NOT MET"}`,
    ].join("\n"),
  );
});
