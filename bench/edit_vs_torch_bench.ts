/**
 * keg and the PyTorch ROME reference (../shared/tools/torch-reference/rome_ref.py) side by side, in one
 * run, on the same CounterFact records, the same machine and the same settings: per-edit seconds of k*,
 * v* and u (what the reference's `edit_s` covers; both exclude the covariance inverse / Cholesky factor,
 * computed once per layer, and the context templates, sampled once), their medians and the ratio
 * keg / torch, for the tuned and default R-ROME configs of both ../shared fact models.
 *
 * Needs torch: `apt-get install -y python3-torch libopenblas0-pthread` (runs `/usr/bin/python3`); without
 * it the torch column says so and only keg is timed. Records: KEG_BENCH_RECORDS (default 5, starting at
 * CounterFact record 10, after one warm-up record each side), torch threads: KEG_BENCH_THREADS (default:
 * the machine's cores). One `deno bench` row per case runs both sides; the table goes to stderr.
 *
 * Run: `deno bench -A bench/edit_vs_torch_bench.ts`.
 * @module
 */
import { loadModel } from "../lib/model/load.ts";
import { loadHparams, type RomeHparams } from "../lib/edit/hparams.ts";
import { loadStatsFile } from "../lib/edit/covariance.ts";
import { RomeEditor } from "../lib/edit/rome.ts";
import type { EditRequest } from "../lib/edit/request.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const REF = `${SHARED}tools/torch-reference/rome_ref.py`;
const DATA = `${SHARED}data/datasets/counterfact-rome/counterfact.json`;
const N = Number(Deno.env.get("KEG_BENCH_RECORDS") ?? "5");
const START = 10;
const THREADS = Number(Deno.env.get("KEG_BENCH_THREADS") ?? String(navigator.hardwareConcurrency));

/** One side-by-side case. */
interface Case {
  name: string;
  model: string;
  config: string;
}

const CASES: Case[] = [
  { name: "tiny-gpt2 R-ROME tuned", model: "tiny-gpt2-counterfact", config: "tiny-gpt2-counterfact-tuned" },
  { name: "tiny-gpt2 R-ROME default", model: "tiny-gpt2-counterfact", config: "tiny-gpt2-counterfact" },
  { name: "tiny-llama R-ROME default", model: "tiny-llama-counterfact", config: "tiny-llama-counterfact" },
  {
    name: "tiny-llama R-ROME tuned",
    model: "tiny-llama-counterfact",
    config: "tiny-llama-counterfact-tuned",
  },
];

const have = await Deno.stat(DATA).then(() => true, () => false);
if (!have) console.warn(`SKIP edit_vs_torch_bench: ${DATA} not found (../shared is missing)`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN;
}

interface CfRecord {
  requested_rewrite: {
    prompt: string;
    subject: string;
    target_new: { str: string };
    target_true: { str: string };
  };
}

function requestOf(rec: CfRecord): EditRequest {
  const rr = rec.requested_rewrite;
  return {
    prompt: rr.prompt,
    subject: rr.subject,
    targetNew: rr.target_new.str,
    groundTruth: rr.target_true.str,
  };
}

/** Per-edit seconds (k* + v* + solve) of keg on the records, after one warm-up edit. */
async function timeKeg(c: Case, hp: RomeHparams, records: CfRecord[]): Promise<number[]> {
  const dir = `${SHARED}models/${c.model}`;
  const model = await loadModel(dir, { precision: "f32", quiet: true });
  try {
    const layer = hp.layers[0];
    const stats = await loadStatsFile(model, layer, `${dir}/rome_reference/mom2_layer${layer}.safetensors`);
    const editor = new RomeEditor(model, hp, { stats });
    await editor.edit(requestOf(records[0])); // compiles every pipeline, factors C, samples templates
    await editor.restore();
    const out: number[] = [];
    for (const rec of records.slice(1)) {
      const { report: r } = await editor.edit(requestOf(rec));
      out.push(r.timings.kStar + r.timings.vStar + r.timings.solve);
      await editor.restore();
    }
    editor.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}

/** Per-edit `edit_s` of the PyTorch reference on the same records (skipping the warm-up record too). */
async function timeTorch(c: Case, hp: RomeHparams): Promise<number[] | string> {
  const py = "/usr/bin/python3";
  const probe = await new Deno.Command(py, { args: ["-c", "import torch"], stdout: "null", stderr: "null" })
    .output().catch(() => null);
  if (!probe?.success) return "torch not installed (apt-get install -y python3-torch libopenblas0-pthread)";
  const out = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const args = [
      REF,
      `${SHARED}models/${c.model}`,
      "--layer",
      String(hp.layers[0]),
      "--n",
      String(N + 1),
      "--start",
      String(START),
      "--variants",
      "r-rome",
      "--threads",
      String(THREADS),
      "--steps",
      String(hp.vNumGradSteps),
      "--lr",
      String(hp.vLr),
      "--clamp",
      String(hp.clampNormFactor),
      "--wd",
      String(hp.vWeightDecay),
      "--fact_token",
      hp.factToken,
      "--json_out",
      out,
    ];
    const r = await new Deno.Command(py, { args, stdout: "null", stderr: "piped" }).output();
    if (!r.success) return `torch reference failed: ${new TextDecoder().decode(r.stderr).slice(-300)}`;
    const rows = (JSON.parse(await Deno.readTextFile(out)) as { rows: { edit_s: number }[] }).rows;
    return rows.slice(1).map((x) => x.edit_s);
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

const rows: string[] = [];
for (const c of CASES) {
  Deno.bench({ name: `keg vs torch: ${c.name}`, ignore: !have, n: 1, warmup: 0 }, async () => {
    const hp = await loadHparams(new URL(`../configs/R-ROME/${c.config}.yaml`, import.meta.url).pathname);
    const records = (JSON.parse(await Deno.readTextFile(DATA)) as CfRecord[]).slice(START, START + N + 1);
    const torch = await timeTorch(c, hp);
    const k = median(await timeKeg(c, hp, records));
    const t = typeof torch === "string" ? NaN : median(torch);
    rows.push(
      `| ${c.name} | ${hp.vNumGradSteps} | ${k.toFixed(2)} | ${
        typeof torch === "string" ? torch : t.toFixed(2)
      } | ${Number.isFinite(t) ? (k / t).toFixed(2) + "×" : "-"} |`,
    );
    console.error(rows.at(-1));
  });
}

globalThis.addEventListener("unload", () => {
  if (!rows.length) return;
  console.error(
    [
      `keg vs PyTorch reference, per-edit seconds (k* + v* + u), median of ${N} CounterFact records from #${START}` +
      ` (after one warm-up record), torch threads ${THREADS}:`,
      "| case | v* steps | keg s/edit | torch s/edit | keg / torch |",
      "| ---- | -------- | ---------- | ------------ | ----------- |",
      ...rows,
    ].join("\n"),
  );
});
