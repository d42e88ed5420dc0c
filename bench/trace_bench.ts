/**
 * Causal tracing over many known facts with keg's own noise, against the oracle's Figure-2 tables.
 *
 * Traces the first KEG_TRACE_N (default 40) known records of ../shared's CounterFact with the model in
 * KEG_TRACE_MODEL (default tiny-gpt2-counterfact), f32, window 3, all three kinds, noise seed
 * KEG_TRACE_SEED (default 2: not the oracle's seed 1, so the numbers agree only statistically), then
 * compares every (bucket, layer) entry of keg's roll-up with the 40-fact tables of the model's
 * trace_reference/README.md: |keg − oracle| against the entry's standard error σ (the rows' spread / √rows,
 * combined with the noise σ of the mean low score that every entry subtracts; 2√2·σ bounds the difference
 * of two such estimates). The one bench iteration also
 * times facts per second. Run: `deno bench -A bench/trace_bench.ts`.
 * @module
 */
import { loadModel } from "../lib/model/load.ts";
import { loadDataset } from "../lib/eval/datasets/mod.ts";
import {
  answerToken,
  cleanPrediction,
  TRACE_KINDS,
  traceFact,
  type TraceKind,
  tracePrompt,
} from "../lib/edit/trace.ts";
import { embeddingStd } from "../lib/edit/trace_noise.ts";
import { BUCKET_LABELS, ROLLUP_BUCKETS, type RollupBucket, rollupKinds } from "../lib/eval/trace_rollup.ts";
import { rollupMarkdown } from "../lib/eval/trace_report.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const NAME = Deno.env.get("KEG_TRACE_MODEL") ?? "tiny-gpt2-counterfact";
const MODEL = `${SHARED}models/${NAME}`;
const DATA = `${SHARED}data/datasets/counterfact-rome/counterfact.json`;
const N = Number(Deno.env.get("KEG_TRACE_N") ?? 40);
const SEED = Number(Deno.env.get("KEG_TRACE_SEED") ?? 2);

/** The oracle README's 40-fact tables: kind → bucket → per-layer AIE. */
function oracleTables(readme: string): Partial<Record<TraceKind, Record<RollupBucket, number[]>>> {
  const heads: [TraceKind, RegExp][] = [
    ["hidden", /^\*\*Hidden state/],
    ["mlp", /^\*\*MLP, window 3/],
    ["attn", /^\*\*Attention, window 3/],
  ];
  const out: Partial<Record<TraceKind, Record<RollupBucket, number[]>>> = {};
  const lines = readme.split("\n");
  for (const [kind, re] of heads) {
    const at = lines.findIndex((l) => re.test(l));
    if (at < 0) continue;
    const table = {} as Record<RollupBucket, number[]>;
    for (const l of lines.slice(at + 1, at + 12)) {
      for (const b of ROLLUP_BUCKETS) {
        if (l.startsWith(`| ${BUCKET_LABELS[b]} (`)) {
          table[b] = l.split("|").slice(2, -1).map((c) => Number(c.replaceAll("*", "").trim()));
        }
      }
    }
    out[kind] = table;
  }
  return out;
}

let exists = true;
try {
  Deno.statSync(MODEL);
} catch {
  exists = false;
  console.warn(`SKIP: ${MODEL} not found`);
}

Deno.bench({
  name: `trace ${N} known facts of ${NAME} (f32, 3 kinds, window 3, seed ${SEED})`,
  ignore: !exists,
  n: 1,
  warmup: 0,
  async fn(b) {
    const model = await loadModel(MODEL, { precision: "f32", quiet: true });
    const tok = model.tokenizer!;
    const records = await loadDataset(DATA);
    const level = 3 * (await embeddingStd(model.net, tok, records.map((r) => r.request.subject))).std;
    const facts = [];
    let lowVar = 0;
    b.start();
    const t0 = performance.now();
    for (const rec of records) {
      if (facts.length >= N) break;
      const p = tracePrompt(tok, rec.request.prompt, rec.request.subject);
      const answerId = answerToken(tok, rec.request.groundTruth!);
      if ((await cleanPrediction(model.net, p.inputIds)) !== answerId) continue;
      const r = await traceFact(model.net, { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId }, {
        noise: { seed: SEED, level },
        window: 3,
      });
      facts.push({
        subjectRange: p.subjectRange,
        highScore: r.highScore,
        lowScore: r.lowScore,
        scores: r.scores,
      });
      // The fact's low score is a mean of `samples` noised rows: its noise variance is var(rows) / samples.
      const m = r.lowScore, k = r.lowScorePerSample.length;
      lowVar += r.lowScorePerSample.reduce((a, v) => a + (v - m) ** 2, 0) / (k - 1) / k;
      console.error(`${facts.length}/${N} case ${rec.caseId}`);
    }
    const s = (performance.now() - t0) / 1000;
    b.end();
    const rolls = rollupKinds(facts);
    const oracle = oracleTables(await Deno.readTextFile(`${MODEL}/trace_reference/README.md`));
    console.log(`\n${facts.length} facts in ${s.toFixed(0)} s (${(facts.length / s).toFixed(3)} facts/s)\n`);
    // σ of the mean low score from the noise alone (every AIE entry subtracts it).
    const sigmaLow = Math.sqrt(lowVar) / facts.length;
    console.log(`σ of the mean low score from the noise: ${sigmaLow.toFixed(4)}\n`);
    for (const kind of TRACE_KINDS) {
      const r = rolls[kind]!, o = oracle[kind];
      console.log(rollupMarkdown(kind, r, 3) + "\n");
      if (!o) continue;
      let within = 0, total = 0, worst = 0, maxDiff = 0;
      for (const bk of ROLLUP_BUCKETS) {
        r.aie[bk].forEach((v, l) => {
          // σ: the rows' spread plus the mean low score's noise; at least the tables' rounding (5e-4).
          const d = Math.abs(v - o[bk][l]), sigma = Math.max(Math.hypot(r.stderr[bk][l], sigmaLow), 1e-3);
          total++;
          if (d <= 2 * Math.SQRT2 * sigma) within++;
          worst = Math.max(worst, d / sigma);
          maxDiff = Math.max(maxDiff, d);
        });
      }
      console.log(
        `${kind}: ${within}/${total} entries within 2√2·σ of the oracle's 40-fact table; max |diff| ${
          maxDiff.toFixed(4)
        }, max |diff|/σ ${worst.toFixed(2)}\n`,
      );
    }
    await model.dispose();
  },
});
