/**
 * End-to-end tests of `keg eval` on the tiny GPT-2 that knows CounterFact facts (../shared): a run killed
 * halfway and resumed equals an uninterrupted run record by record, two shards merged equal one run, a
 * sequential run resumed equals one run (deltas re-applied exactly), a malformed dataset writes nothing.
 *
 * Cheap settings keep it within a few minutes on lavapipe: R-ROME with one v* forward (δ = 0, yet ΔW ≠ 0:
 * R-ROME subtracts the templates' mean value v̄ rather than the prompt's own value) and 6 context
 * templates, the oracle's covariance file, and CounterFact records cut to one paraphrase and one
 * neighborhood prompt (written to a temporary file; the shared file is only read).
 */
import assert from "node:assert/strict";
import { sharedPath } from "../_util.ts";
import { evalCommand } from "../../lib/cli/eval.ts";
import { UsageError } from "../../lib/cli/args.ts";
import { loadModel } from "../../lib/model/load.ts";
import { loadDataset } from "../../lib/eval/datasets/mod.ts";
import {
  comparableResult,
  evaluatePhase,
  type RecordResult,
  targetIdsAfter,
} from "../../lib/eval/protocol.ts";
import { efficacyScore, locality } from "../../lib/eval/metrics.ts";
import { readJsonl, readRunDir, RUN_FILES } from "../../lib/eval/report.ts";

const MODEL = sharedPath("models/tiny-gpt2-counterfact");
const DATA = sharedPath("data/datasets/counterfact-rome/counterfact.json");
const STATS = sharedPath("models/tiny-gpt2-counterfact/rome_reference/mom2_layer0.safetensors");
const HPARAMS = new URL("../../configs/R-ROME/tiny-gpt2-counterfact.yaml", import.meta.url).pathname;
const MAIN = new URL("../../lib/cli/main.ts", import.meta.url).pathname;
const ready = MODEL !== null && DATA !== null && STATS !== null;

/** The first `n` CounterFact records with one paraphrase and one neighborhood prompt each. */
async function smallCounterfact(dir: string, n: number): Promise<string> {
  const all = JSON.parse(await Deno.readTextFile(DATA!)) as Record<string, unknown>[];
  const cut = all.slice(0, n).map((r) => ({
    ...r,
    paraphrase_prompts: (r.paraphrase_prompts as string[]).slice(0, 1),
    neighborhood_prompts: (r.neighborhood_prompts as string[]).slice(0, 1),
    attribute_prompts: [],
    generation_prompts: [],
  }));
  const path = `${dir}/cf${n}.json`;
  await Deno.writeTextFile(path, JSON.stringify(cut));
  return path;
}

function baseArgs(data: string): string[] {
  return [
    "--hparams",
    HPARAMS,
    "--model",
    MODEL!,
    "--data",
    data,
    "--stats",
    STATS!,
    "--set",
    "v_num_grad_steps=1,context_template_length_params=[[5,5]]",
    "--quiet",
  ];
}

async function results(dir: string): Promise<RecordResult[]> {
  return (await readRunDir(dir)).results;
}

/** The summary without what depends on wall-clock time. */
async function stableSummary(dir: string): Promise<unknown> {
  const s = JSON.parse(await Deno.readTextFile(`${dir}/${RUN_FILES.summaryJson}`));
  delete s.rome.time;
  delete s.diagnostics.timing;
  delete s.run;
  return s;
}

function assertSameResults(got: RecordResult[], want: RecordResult[], what: string): void {
  assert.deepEqual(got.map((r) => r.index), want.map((r) => r.index), `${what}: record indices`);
  got.forEach((r, i) =>
    assert.deepEqual(comparableResult(r), comparableResult(want[i]), `${what}: record ${r.index}`)
  );
}

Deno.test({
  name: "eval: killed halfway + resumed == uninterrupted; two shards merged == one run; reports written",
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "keg_eval_" });
    try {
      const data = await smallCounterfact(tmp, 20);
      const base = baseArgs(data);

      await evalCommand([...base, "--out", `${tmp}/full`]);
      const full = await results(`${tmp}/full`);
      assert.equal(full.length, 20);
      // every record has the edit's diagnostics
      for (const r of full) {
        assert.equal(r.edits.length, 1);
        assert.ok(
          Number.isFinite(r.edits[0].divisionFactor) && r.edits[0].dWRel > 0,
          `record ${r.index} diagnostics`,
        );
        assert.ok(r.memory[0].peakBytes > 0 && r.time > 0);
        assert.ok(r.post.locality?.neighborhood?.length === 1);
        // the top-5 next tokens after the rewrite prompt, before and after the edit, most likely first
        for (const top of [r.topK?.pre, r.topK?.post]) {
          assert.equal(top?.length, 5, `record ${r.index} top-5`);
          assert.ok(top!.every((t, i) => i === 0 || t.prob <= top![i - 1].prob));
          assert.ok(top!.reduce((a, t) => a + t.prob, 0) <= 1 + 1e-6);
        }
      }

      // killed: a real process (through lib/cli/main.ts) killed after ≥ 8 records, then a torn line
      const killedDir = `${tmp}/killed`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, "eval", ...base, "--out", killedDir],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const childErr = new Response(child.stderr).text();
      const resultsPath = `${killedDir}/${RUN_FILES.results}`;
      let lines = 0;
      for (let t = 0; t < 6000 && lines < 8; t++) {
        await new Promise((r) => setTimeout(r, 100));
        lines = (await readJsonl(resultsPath).catch(() => ({ values: [] }))).values.length;
      }
      child.kill("SIGKILL");
      const status = await child.status;
      const err = await childErr;
      assert.ok(lines >= 8, `the child wrote ${lines} lines before the deadline: ${err}`);
      assert.ok(!status.success, "the child was killed before finishing");
      await Deno.writeTextFile(resultsPath, '{"index":19,"caseId":12,"pre":{"rewr', { append: true });
      const before = (await readJsonl(resultsPath)).values as RecordResult[];
      assert.ok(before.length < 20, `killed halfway (${before.length} records done)`);

      await evalCommand([...base, "--out", killedDir]);
      const after = (await readJsonl(resultsPath)).values as RecordResult[];
      assert.equal(after.length, 20, "each record once: done records are skipped, the torn line dropped");
      assert.deepEqual(
        after.slice(0, before.length),
        before,
        "the records done before the kill were kept as written",
      );
      assertSameResults(await results(killedDir), full, "resumed vs uninterrupted");
      assert.deepEqual(await stableSummary(killedDir), await stableSummary(`${tmp}/full`));

      // shards, merged
      await evalCommand([...base, "--shard", "0/2", "--out", `${tmp}/s0`]);
      await evalCommand([...base, "--shard", "1/2", "--out", `${tmp}/s1`]);
      assert.deepEqual((await results(`${tmp}/s1`)).map((r) => r.index), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
      await evalCommand(["merge", "--out", `${tmp}/merged`, `${tmp}/s1`, `${tmp}/s0`]);
      assertSameResults(await results(`${tmp}/merged`), full, "merged shards vs one run");
      assert.deepEqual(await stableSummary(`${tmp}/merged`), await stableSummary(`${tmp}/full`));

      // the report files
      const md = await Deno.readTextFile(`${tmp}/full/${RUN_FILES.summaryMd}`);
      assert.match(md, /\| phase \| rewrite_acc \| rephrase_acc \| locality neighborhood_acc \|/);
      assert.match(md, /\| phase \| ES \| PS \| NS \| S \|/);
      const html = await Deno.readTextFile(`${tmp}/full/${RUN_FILES.report}`);
      assert.ok((html.match(/<svg /g) ?? []).length >= 5, "inline SVG charts");
      for (
        const title of [
          "Pre vs post edit",
          "Pass/fail per record and metric",
          "Per edit (20)",
        ]
      ) {
        assert.ok(html.includes(title), title);
      }
      assert.ok(!/<script|<link|src="http/.test(html), "self-contained");
      const summary = JSON.parse(await Deno.readTextFile(`${tmp}/full/${RUN_FILES.summaryJson}`));
      assert.equal(summary.num_cases, 20);
      assert.ok("post_rewrite_success" in summary.rome && "post_neighborhood_success" in summary.rome);
      assert.equal(summary.diagnostics.edits, 20);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "eval: sequential run resumed (deltas re-applied) equals one run; final metrics on the final model",
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "keg_eval_seq_" });
    try {
      const data = await smallCounterfact(tmp, 3);
      const base = [...baseArgs(data), "--sequential"];
      await evalCommand([...base, "--out", `${tmp}/one`]);
      await evalCommand([...base, "--limit", "2", "--out", `${tmp}/two`]);
      const partial = await results(`${tmp}/two`);
      assert.equal(partial.length, 2);
      assert.ok(partial.every((r) => r.final && r.appliedFile));
      await evalCommand([...base, "--out", `${tmp}/two`]); // resume to all 3 records
      const one = await results(`${tmp}/one`), two = await results(`${tmp}/two`);
      assertSameResults(two, one, "sequential resumed vs one run");
      assert.deepEqual(two.map((r) => r.final), one.map((r) => r.final), "final metrics");
      const s = JSON.parse(await Deno.readTextFile(`${tmp}/one/${RUN_FILES.summaryJson}`));
      assert.equal(s.final.num_cases, 3);
      assert.ok("final_rewrite_success" in s.final.rome);
      // the last record's final phase is evaluated on the same model as its post phase
      assert.deepEqual(one[2].final, one[2].post);

      await assert.rejects(
        () => evalCommand([...base, "--shard", "0/2", "--out", `${tmp}/x`]),
        (e: unknown) => e instanceof UsageError && /cannot be sharded/.test(e.message),
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "eval: a malformed dataset is a clear error and nothing is written",
  ignore: !ready,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "keg_eval_bad_" });
    try {
      const all = JSON.parse(await Deno.readTextFile(DATA!)) as {
        requested_rewrite: Record<string, unknown>;
      }[];
      const bad = all.slice(0, 3);
      delete bad[1].requested_rewrite.subject;
      const path = `${tmp}/bad.json`;
      await Deno.writeTextFile(path, JSON.stringify(bad));
      await assert.rejects(
        () => evalCommand([...baseArgs(path), "--out", `${tmp}/out`]),
        /bad\.json: record 1, field "requested_rewrite\.subject": missing/,
      );
      await assert.rejects(() => Deno.stat(`${tmp}/out`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "evaluatePhase: EasyEdit and ROME numbers from one batch agree with the per-prompt scores",
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const model = await loadModel(MODEL!, { quiet: true });
    try {
      const [rec] = await loadDataset(DATA!, { limit: 1 });
      const tok = model.tokenizer!;
      // EasyEdit's slicing equals ROME's " target" tokens for GPT-2 BPE
      const prompt = rec.request.prompt.replace("{}", rec.request.subject);
      assert.deepEqual(
        targetIdsAfter(tok, prompt, rec.request.targetNew),
        tok.encode(` ${rec.request.targetNew}`),
      );
      const pre = await evaluatePhase(model, rec);
      const m = pre.metrics;
      assert.equal(m.rewriteAcc?.length, 1);
      assert.equal(m.rephraseAcc?.length, rec.rephrasePrompts.length);
      assert.equal(m.paraphrasePromptsProbs?.length, rec.rephrasePrompts.length);
      assert.equal(m.neighborhoodPromptsProbs?.length, rec.neighborhoodPrompts.length);
      assert.equal(pre.localityIds.neighborhood.length, rec.localityPrompts.length);
      assert.equal(m.locality, undefined, "no locality without a reference (EasyEdit fills it post-edit)");
      // the model knows the true fact: ES 0 before the edit, neighborhood true answers win
      assert.equal(efficacyScore(m.rewritePromptsProbs!), 0);
      // the same model against itself: locality 1 everywhere
      const again = await evaluatePhase(model, {
        ...rec,
        generationPrompts: rec.generationPrompts.slice(0, 2),
      }, {
        reference: pre.localityIds,
        fluency: { maxLength: 16, topK: 5, seed: 0 },
      });
      assert.deepEqual(again.metrics.locality?.neighborhood, rec.localityPrompts.map(() => 1));
      assert.deepEqual(again.metrics.rewritePromptsProbs, m.rewritePromptsProbs);
      assert.ok(again.metrics.ngramEntropy! > 0 && Number.isFinite(again.metrics.ngramEntropy));
      // a changed reference lowers locality by the changed positions
      const ref = structuredClone(pre.localityIds);
      ref.neighborhood[0] = ref.neighborhood[0].map((id, i) => (i === 0 ? id + 1 : id));
      const moved = await evaluatePhase(model, rec, { reference: ref });
      assert.equal(
        moved.metrics.locality!.neighborhood[0],
        locality(ref.neighborhood[0], pre.localityIds.neighborhood[0]),
      );
      assert.ok(moved.metrics.locality!.neighborhood[0] < 1);
    } finally {
      await model.dispose();
    }
  },
});
