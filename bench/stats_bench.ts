/**
 * Covariance statistics throughput (`keg stats`, layer 0 of ../shared/models/tiny-gpt2-counterfact over
 * WikiText-2 test): tokens/s of today's default path against the path as it was when issue 9 was filed,
 * in the same run, with the ratio printed; plus where the time of one statistics batch goes.
 *
 * Configurations (all through `collectStats`, results equal within f32 summation order):
 * - `issue 9 baseline`: the storage-read kernels (`texelKernels(gpu, false)`: matmul `direct`, covariance
 *   `direct`, attention `row`), each batch one right-padded block (to its longest sequence: 128 tokens in
 *   every batch here), the whole block forwarded (down-projection included) and the keys gathered
 *   (`StatsOptions.paddedFullForward`, a bench-only option, not on the CLI);
 * - `texel kernels, padded full forward`: the packed-texture kernels of CPU adapters on that old batch path;
 * - `default`: texel kernels, batches split into length groups, forwards stopped at the layer's key.
 *
 * Runs interleave (a round runs every configuration once, in one call of the bench) so that a load change
 * hits all of them alike; the first round compiles the pipelines and is not counted. Run: `deno bench -A bench/stats_bench.ts`;
 * KEG_BENCH_STATS_SEQS sets the sequences per run (default 96), KEG_BENCH_STATS_ROUNDS the counted rounds
 * (default 3), KEG_BENCH_STATS_BREAKDOWN=0 skips the per-phase table.
 * @module
 */
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import { padBatch, type TokenBatch } from "../lib/model/transformer.ts";
import { collectStats, lengthGroups, readCorpus } from "../lib/edit/covariance.ts";
import { covarianceAccumulate } from "../lib/ops/covariance.ts";
import { texelKernels } from "../lib/ops/matmul_texel.ts";
import { Tensor } from "../lib/gpu/tensor.ts";

const MODEL = new URL("../../shared/models/tiny-gpt2-counterfact", import.meta.url).pathname;
const CORPUS = new URL("../../shared/data/corpus/wikitext-2/wiki.test.tokens", import.meta.url).pathname;
const have = await Deno.stat(MODEL).then(() => true, () => false);
if (!have) console.warn(`SKIP stats_bench: ${MODEL} not found`);
const SEQS = Number(Deno.env.get("KEG_BENCH_STATS_SEQS") ?? "96");
const ROUNDS = Number(Deno.env.get("KEG_BENCH_STATS_ROUNDS") ?? "3");
const BATCH = 32;

interface Config {
  name: string;
  texel: boolean;
  padded: boolean;
}
const CONFIGS: Config[] = [
  { name: "issue 9 baseline (storage-read kernels, padded, full block)", texel: false, padded: true },
  { name: "texel kernels, padded, full block", texel: true, padded: true },
  { name: "default (texel, length groups, forward to the key)", texel: true, padded: false },
];

let model: LoadedModel | undefined;
async function getModel(): Promise<LoadedModel> {
  model ??= await loadModel(MODEL, { quiet: true });
  return model;
}

/** tokens/s of each counted round, per configuration. */
const rates: Record<string, number[]> = {};

async function statsRun(c: Config): Promise<number> {
  const m = await getModel();
  const gpu = m.net.deviceOf(0);
  texelKernels(gpu, c.texel);
  const dir = await Deno.makeTempDir();
  try {
    const t0 = performance.now();
    const s = await collectStats(m, {
      layer: 0,
      corpus: [CORPUS],
      nSamples: SEQS,
      dir,
      force: true,
      paddedFullForward: c.padded,
    });
    const sec = (performance.now() - t0) / 1000;
    s.c.dispose();
    return s.count / sec;
  } finally {
    texelKernels(gpu, true);
    await Deno.remove(dir, { recursive: true });
  }
}

// One Deno.bench call = one round (each path once, in order); the first call compiles the pipelines and is not
// counted. Deno calls a bench a few times more than `n`; rounds past ROUNDS are skipped.
let calls = 0;
Deno.bench({
  name: `one round: every path once, ${SEQS} sequences`,
  group: "stats",
  ignore: !have,
  n: ROUNDS,
  warmup: 1,
}, async (b) => {
  const round = calls++;
  b.start();
  if (round <= ROUNDS) {
    for (const c of CONFIGS) {
      const r = await statsRun(c);
      if (round) (rates[c.name] ??= []).push(r);
    }
  }
  b.end();
});

/** Flat rows of the real tokens of a padded batch. */
function realRows(b: TokenBatch): Uint32Array {
  const rows: number[] = [];
  b.lengths.forEach((n, r) => {
    for (let p = 0; p < n; p++) rows.push(r * b.seq + p);
  });
  return Uint32Array.from(rows);
}

/** Milliseconds per phase of one statistics batch (each phase waits for the GPU): medians of 3 rounds. */
async function breakdown(c: Config): Promise<Record<string, number>> {
  const m = await getModel();
  const gpu = m.net.deviceOf(0);
  texelKernels(gpu, c.texel);
  const seqs = await readCorpus([CORPUS], BATCH);
  const d = m.config.intermediateSize;
  const acc = Tensor.zeros(gpu, [d, d], "f32");
  const out: Record<string, number> = { tokenize: 0, forward: 0, covariance: 0, tokens: 0, groups: 0 };
  const runs: Record<string, number[]> = { tokenize: [], forward: [], covariance: [] };
  try {
    for (let rep = 0; rep < 4; rep++) { // the first round compiles every pipeline
      let t = performance.now();
      const ids = seqs.map((s) => m.tokenizer!.encode(s).slice(0, m.net.config.maxPositions));
      const tTok = performance.now() - t;
      const groups = c.padded ? [ids.map((_, i) => i)] : lengthGroups(ids.map((s) => s.length));

      let tFwd = 0, tCov = 0, tokens = 0;
      if (c.padded) {
        // one padded block, the full block forward, the real rows gathered, one update
        const b = padBatch(ids);
        const rows = realRows(b);
        t = performance.now();
        const { x, keys, values } = await m.net.prefix(b, 0, { layer: 0, readRows: rows });
        await gpu.sync();
        tFwd = performance.now() - t;
        x.dispose(), values?.dispose();
        t = performance.now();
        await covarianceAccumulate(acc, keys!);
        await gpu.sync();
        tCov = performance.now() - t;
        keys!.dispose();
        tokens = rows.length;
      } else {
        // as collectStats' default: key-only forwards of the length groups, their real key rows copied into
        // one matrix, one update
        const all = Tensor.empty(gpu, [ids.reduce((a, s) => a + s.length, 0), d], "f32");
        const held: Tensor[] = [all];
        t = performance.now();
        for (const g of groups) {
          const b = padBatch(g.map((i) => ids[i]));
          const { x, keys } = await m.net.prefix(b, 0, { layer: 0, keysOnly: true });
          x.dispose(), held.push(keys!);
          for (const [r, n] of b.lengths.entries()) {
            gpu.copy(keys!.chunks[0], r * b.seq * d * 4, all.chunks[0], tokens * d * 4, n * d * 4);
            tokens += n;
          }
        }
        await gpu.sync();
        tFwd = performance.now() - t;
        t = performance.now();
        await covarianceAccumulate(acc, all);
        await gpu.sync();
        tCov = performance.now() - t;
        for (const k of held) k.dispose();
      }
      if (rep === 0) continue;
      runs.tokenize.push(tTok), runs.forward.push(tFwd), runs.covariance.push(tCov);
      out.tokens = tokens, out.groups = groups.length;
    }
    for (const [k, v] of Object.entries(runs)) out[k] = v.sort((p, q) => p - q)[v.length >> 1];
  } finally {
    acc.dispose();
    texelKernels(gpu, true);
  }
  return out;
}

const median = (x: number[]) => {
  const s = [...x].sort((p, q) => p - q);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

globalThis.addEventListener("unload", () => {
  const base = rates[CONFIGS[0].name];
  if (!base?.length) return;
  const lines = CONFIGS.filter((c) => rates[c.name]?.length).map((c) => {
    const v = rates[c.name];
    const perRound = v.map((r, i) => r / base[i]);
    return `| ${c.name} | ${v.map((r) => r.toFixed(0)).join(", ")} | ${median(v).toFixed(0)} | ${
      (median(v) / median(base)).toFixed(2)
    }× | ${perRound.map((r) => r.toFixed(2)).join(", ")} |`;
  });
  console.error(
    [
      "",
      `keg stats, layer 0 of tiny-gpt2-counterfact, ${SEQS} WikiText-2 sequences, ${base.length} interleaved rounds:`,
      "| path | tokens/s per round | median | vs issue 9 baseline (medians) | per-round ratios |",
      "|---|---|---|---|---|",
      ...lines,
    ].join("\n"),
  );
});

if (have && Deno.env.get("KEG_BENCH_STATS_BREAKDOWN") !== "0") {
  const rows: string[] = [];
  for (const c of CONFIGS) {
    const r = await breakdown(c);
    rows.push(
      `| ${c.name} | ${r.groups} | ${r.tokens} | ${r.tokenize.toFixed(0)} | ${r.forward.toFixed(0)} | ${
        r.covariance.toFixed(0)
      } |`,
    );
  }
  console.error(
    [
      "",
      `one statistics batch (${BATCH} sequences, layer 0, f32), ms per phase (median of 3 rounds):`,
      "| path | sub-batches | keys | tokenize | forward to layer 0 | C += KᵀK |",
      "|---|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
}
