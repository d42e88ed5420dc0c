/**
 * Covariance statistics throughput (`keg stats`, layer 0 of ../shared/models/tiny-gpt2-counterfact over
 * WikiText-2 test): tokens/s with the packed-texture kernels of CPU adapters against the storage-read
 * kernels they replace (`texelKernels(gpu, false)`, the baseline), in the same run, plus where the time of
 * one statistics batch goes (tokenizer, forward up to the layer, C += KᵀK).
 * Run: `deno bench -A bench/stats_bench.ts`; KEG_BENCH_STATS_SEQS sets the sequences per run (default 96).
 * @module
 */
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import { padBatch } from "../lib/model/transformer.ts";
import { collectStats, readCorpus } from "../lib/edit/covariance.ts";
import { covarianceAccumulate } from "../lib/ops/covariance.ts";
import { texelKernels } from "../lib/ops/matmul_texel.ts";
import { Tensor } from "../lib/gpu/tensor.ts";

const MODEL = new URL("../../shared/models/tiny-gpt2-counterfact", import.meta.url).pathname;
const CORPUS = new URL("../../shared/data/corpus/wikitext-2/wiki.test.tokens", import.meta.url).pathname;
const have = await Deno.stat(MODEL).then(() => true, () => false);
if (!have) console.warn(`SKIP stats_bench: ${MODEL} not found`);
const SEQS = Number(Deno.env.get("KEG_BENCH_STATS_SEQS") ?? "96");
const BATCH = 32;

let model: LoadedModel | undefined;
async function getModel(): Promise<LoadedModel> {
  model ??= await loadModel(MODEL, { quiet: true });
  return model;
}

/** tokens/s of each run, per configuration. */
const rates: Record<string, number[]> = {};

async function statsRun(texel: boolean): Promise<number> {
  const m = await getModel();
  const gpu = m.net.deviceOf(0);
  texelKernels(gpu, texel);
  const dir = await Deno.makeTempDir();
  try {
    const t0 = performance.now();
    const s = await collectStats(m, { layer: 0, corpus: [CORPUS], nSamples: SEQS, dir, force: true });
    const sec = (performance.now() - t0) / 1000;
    s.c.dispose();
    return s.count / sec;
  } finally {
    texelKernels(gpu, true);
    await Deno.remove(dir, { recursive: true });
  }
}

for (const texel of [false, true]) {
  const name = texel ? "stats texel kernels" : "stats storage-read kernels (before)";
  Deno.bench({
    name: `${name}, ${SEQS} sequences`,
    group: "stats",
    baseline: !texel,
    ignore: !have,
    n: 3,
    warmup: 1,
  }, async (b) => {
    b.start();
    const r = await statsRun(texel);
    b.end();
    (rates[name] ??= []).push(r);
  });
}

/** Milliseconds per phase of one statistics batch (each phase waits for the GPU): medians of 3 rounds. */
async function breakdown(texel: boolean): Promise<Record<string, number>> {
  const m = await getModel();
  const gpu = m.net.deviceOf(0);
  texelKernels(gpu, texel);
  const seqs = await readCorpus([CORPUS], BATCH);
  const d = m.config.intermediateSize;
  const c = Tensor.zeros(gpu, [d, d], "f32");
  const out: Record<string, number> = { tokenize: 0, forward: 0, covariance: 0, tokens: 0 };
  const runs: Record<string, number[]> = { tokenize: [], forward: [], covariance: [] };
  try {
    for (let rep = 0; rep < 4; rep++) { // the first round compiles every pipeline
      let t = performance.now();
      const ids = seqs.map((s) => m.tokenizer!.encode(s).slice(0, m.net.config.maxPositions));
      const tTok = performance.now() - t;
      const b = padBatch(ids);
      const rows: number[] = [];
      b.lengths.forEach((n, r) => {
        for (let p = 0; p < n; p++) rows.push(r * b.seq + p);
      });
      t = performance.now();
      const { x, keys } = await m.net.prefix(b, 0, { layer: 0, readRows: Uint32Array.from(rows) });
      await gpu.sync();
      const tFwd = performance.now() - t;
      x.dispose();
      t = performance.now();
      await covarianceAccumulate(c, keys!);
      await gpu.sync();
      const tCov = performance.now() - t;
      keys!.dispose();
      if (rep === 0) continue;
      runs.tokenize.push(tTok), runs.forward.push(tFwd), runs.covariance.push(tCov);
      out.tokens = rows.length;
    }
    for (const [k, v] of Object.entries(runs)) out[k] = v.sort((p, q) => p - q)[v.length >> 1];
  } finally {
    c.dispose();
    texelKernels(gpu, true);
  }
  return out;
}

globalThis.addEventListener("unload", () => {
  const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
  const lines = Object.entries(rates).map(([k, v]) =>
    `| ${k} | ${v.map((r) => r.toFixed(0)).join(", ")} | ${med(v).toFixed(0)} |`
  );
  if (lines.length) {
    console.error(["", "| kernels | tokens/s per run | median |", "|---|---|---|", ...lines].join("\n"));
  }
});

if (have && Deno.env.get("KEG_BENCH_STATS_BREAKDOWN") !== "0") {
  const rows: string[] = [];
  for (const texel of [false, true]) {
    const r = await breakdown(texel);
    rows.push(
      `| ${texel ? "texel" : "storage-read (before)"} | ${r.tokens} | ${r.tokenize.toFixed(0)} | ${
        r.forward.toFixed(0)
      } | ${r.covariance.toFixed(0)} |`,
    );
  }
  console.error(
    [
      "",
      `one statistics batch (${BATCH} sequences, layer 0, f32), ms per phase (median of 3 rounds):`,
      "| kernels | keys | tokenize | forward to layer 0 | C += KᵀK |",
      "|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
}
