/**
 * Causal tracing pieces: ROME's noise (numpy's MT19937 reproduced bit for bit against the oracle's stored
 * noise), the embedding std, the invariants the oracle data satisfy (on keg's own noise, seed 7), the
 * shortcut for tokens before the subject, bad input, and `layers: auto`.
 * @module
 */
import assert from "node:assert/strict";
import { type LoadedModel, loadModel } from "../../lib/model/load.ts";
import { openSafetensors } from "../../lib/model/safetensors.ts";
import {
  answerToken,
  checkWindow,
  cleanPrediction,
  findTokenRange,
  noiseValues,
  resolveAutoLayer,
  TraceError,
  traceFact,
  tracePrompt,
  windowLayers,
} from "../../lib/edit/trace.ts";
import { restoreForward, traceBase } from "../../lib/edit/trace_forward.ts";
import { embeddingStd, Mt19937, seededNoise } from "../../lib/edit/trace_noise.ts";
import { parseHparams } from "../../lib/edit/hparams.ts";
import { RomeEditor } from "../../lib/edit/rome.ts";
import { sharedPath } from "../_util.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("Mt19937 is numpy's RandomState: the first outputs for seed 5489 and the oracle's stored noise", async () => {
  // Reference values of MT19937 (Matsumoto & Nishimura's mt19937ar.c, init_genrand(5489)): 3499211612, 581869302.
  const g = new Mt19937(5489);
  assert.equal(g.nextU32(), 3499211612);
  assert.equal(g.nextU32(), 581869302);
  for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
    const dir = sharedPath(`models/${name}/trace_reference`);
    if (!dir) return;
    const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace.json`));
    const f = await openSafetensors(`${dir}/noise.safetensors`);
    try {
      for (const fact of ref.facts) {
        const stored = await f.readFloat(fact.noise_key, "f32");
        const mine = seededNoise(ref.seed, stored.data.length, ref.noise_level);
        assert.deepEqual(mine, stored.data, `${name} ${fact.noise_key}: bit-identical noise`);
        assert.deepEqual(
          noiseValues({ seed: ref.seed, level: ref.noise_level }, 10, stored.shape[1], stored.shape[2]),
          mine,
        );
      }
    } finally {
      await f.close();
    }
  }
  assert.throws(() => new Mt19937(-1), /seed/);
});

Deno.test("windows, window checks and subject ranges", () => {
  assert.deepEqual(windowLayers(0, 3, 6), [0, 1]);
  assert.deepEqual(windowLayers(3, 3, 6), [2, 3, 4]);
  assert.deepEqual(windowLayers(5, 3, 6), [4, 5]);
  assert.deepEqual(windowLayers(20, 10, 48), [15, 16, 17, 18, 19, 20, 21, 22, 23, 24]); // ROME: l − 5 … l + 4
  assert.deepEqual(windowLayers(2, 1, 6), [2]);
  assert.throws(() => checkWindow(7, 6), /window 7 is larger than the model's 6 layers/);
  assert.throws(() => checkWindow(0, 6), /positive integer/);
});

async function withModel(name: string, f: (m: LoadedModel, ref: Json) => Promise<void>): Promise<void> {
  const dir = sharedPath(`models/${name}`);
  if (!dir) return;
  const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace_reference/trace.json`));
  const m = await loadModel(dir, { precision: "f32", quiet: true });
  try {
    await f(m, ref);
  } finally {
    await m.dispose();
  }
}

Deno.test("embedding std over the CounterFact subjects is the oracle's (ROME's collect_embedding_std)", async () => {
  const cf = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!cf) return;
  const subjects = (JSON.parse(await Deno.readTextFile(cf)) as Json[]).map((r) =>
    r.requested_rewrite.subject
  );
  for (const name of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
    await withModel(name, async (m, ref) => {
      const s = await embeddingStd(m.net, m.tokenizer!, subjects);
      assert.equal(s.subjects, ref.std_over.n_subjects);
      assert.equal(s.tokens, ref.std_over.n_tokens);
      assert.ok(
        Math.abs(s.std - ref.embed_std) <= 1e-6 * ref.embed_std,
        `${name}: std ${s.std} vs ${ref.embed_std}`,
      );
    });
  }
});

Deno.test("bad input: subject not in the prompt, a wrong answer is traced and flagged, window too large", async () => {
  await withModel("tiny-gpt2-counterfact", async (m, ref) => {
    const tok = m.tokenizer!;
    assert.throws(() => tracePrompt(tok, "{} is located in", ""), TraceError);
    assert.throws(
      () => tracePrompt(tok, "Paris is located in", "Angola", { where: "--prompt" }),
      /--prompt: subject "Angola" is not in the prompt "Paris is located in"/,
    );
    assert.throws(() => tracePrompt(tok, "{} and {}", "x"), /one at most/);
    assert.throws(() => findTokenRange(tok, tok.encode("Paris is"), "Rome"), /not in the prompt/);
    const p = tracePrompt(tok, "{} is located in", "Angola");
    const fact = { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId: answerToken(tok, "Europe") };
    const noise = { seed: 1, level: ref.noise_level };
    await assert.rejects(
      () => traceFact(m.net, fact, { noise, window: 7 }),
      /window 7 is larger than the model's 6 layers/,
    );
    await assert.rejects(
      () => traceFact(m.net, { ...fact, subjectRange: [3, 9] }, { noise }),
      /subject range \[3, 9\) is not inside/,
    );
    // " Europe" is not what the clean model predicts (" Africa"): traced anyway, flagged as ROME does.
    assert.equal(await cleanPrediction(m.net, p.inputIds), answerToken(tok, "Africa"));
    const r = await traceFact(m.net, fact, { noise, kinds: ["hidden"], tokens: [p.inputIds.length - 1] });
    assert.equal(r.correctPrediction, false);
    assert.equal(r.cleanArgmax, answerToken(tok, "Africa"));
    assert.ok(r.highScore > 0 && r.highScore < 0.5);
    assert.ok(Math.abs(r.scores.hidden![p.inputIds.length - 1][5] - r.highScore) < 1e-6);
  });
});

Deno.test("oracle invariants on keg's own noise (seed 7), and tokens before the subject are the low score", async () => {
  await withModel("tiny-llama-counterfact", async (m, ref) => {
    const tok = m.tokenizer!;
    const f = ref.facts.find((x: Json) => x.case_id === 3648); // subject [6, 7) of 10 tokens
    const p = tracePrompt(tok, f.prompt, f.subject);
    const T = p.inputIds.length, L = 6, last = T - 1;
    const fact = { inputIds: p.inputIds, subjectRange: p.subjectRange, answerId: f.answer_id };
    const r = await traceFact(m.net, fact, {
      noise: { seed: 7, level: ref.noise_level },
      kinds: ["hidden"],
      tokens: [6, 8, last],
      window: 3,
    });
    assert.ok(Math.abs(r.scores.hidden![last][L - 1] - r.highScore) < 1e-6, "last layer, last token = clean");
    for (const t of [6, 8]) assert.ok(Math.abs(r.scores.hidden![t][L - 1] - r.lowScore) < 1e-6, `token ${t}`);
    assert.ok(r.lowScore < r.highScore - 0.1, "the noise corrupts");
    // Restoring any state before the subject (computed here, skipped by traceFact) changes nothing.
    const noise = noiseValues({ seed: 7, level: ref.noise_level }, 10, 1, m.config.hiddenSize);
    const base = await traceBase(m.net, fact, noise, 10);
    try {
      const sets = [
        [{ kind: "hidden" as const, token: 0, layer: 2 }],
        [{ kind: "mlp" as const, token: 5, layer: 0 }, { kind: "mlp" as const, token: 5, layer: 1 }],
        [{ kind: "attn" as const, token: 3, layer: 4 }],
      ];
      const probs = await restoreForward(m.net, base, sets, 0);
      for (let i = 0; i < probs.length; i++) {
        assert.ok(
          Math.abs(probs[i] - base.lowPerSample[i % 10]) < 1e-6,
          `set ${Math.floor(i / 10)} row ${i % 10}`,
        );
      }
    } finally {
      base.dispose();
    }
  });
});

Deno.test("layers: auto parses, refuses to edit unresolved, and resolves to the MLP layer traced strongest", async () => {
  const yaml = (layers: string) =>
    `alg_name: ROME\nlayers: ${layers}\nfact_token: subject_last\nv_num_grad_steps: 5\nv_lr: 0.5\nv_loss_layer: 5\n` +
    `v_weight_decay: 0.5\nclamp_norm_factor: 4\nkl_factor: 0.0625\nmom2_adjustment: false\n` +
    `context_template_length_params: [[5, 2]]\nrewrite_module_tmp: "transformer.h.{}.mlp.c_proj"\n` +
    `layer_module_tmp: "transformer.h.{}"\nmlp_module_tmp: "transformer.h.{}.mlp"\n` +
    `attn_module_tmp: "transformer.h.{}.attn"\nln_f_module: transformer.ln_f\nlm_head_module: transformer.wte\n` +
    `mom2_dataset: wikipedia\nmom2_n_samples: 100\nmom2_dtype: float32\n`;
  const hp = parseHparams(yaml("auto"), "auto.yaml");
  assert.equal(hp.layersAuto, true);
  assert.deepEqual(hp.layers, []);
  assert.equal(parseHparams(yaml("[3]"), "x.yaml").layersAuto, false);
  assert.throws(
    () => parseHparams(yaml("automatic"), "x.yaml"),
    /x\.yaml: layers: expected a non-empty list/,
  );
  await withModel("tiny-gpt2-counterfact", async (m) => {
    assert.throws(() => new RomeEditor(m, hp, { stats: null }), /layers: auto must be resolved first/);
    const prompts = [
      { prompt: "{} is located in", subject: "Angola" },
      { prompt: "{} can be found in", subject: "2011 Cannes Film Festival" },
    ];
    const r = await resolveAutoLayer(m, hp, prompts);
    // The oracle README: at the last subject token only MLP 0 has an effect (0.109 alone, layers 1–5 ≤ 0.003).
    assert.deepEqual(r.layers, [0]);
    assert.equal(r.autoLayer!.layer, 0);
    assert.equal(r.autoLayer!.facts, 2);
    assert.ok(r.autoLayer!.margin > 0.01, `margin ${r.autoLayer!.margin}`);
    assert.deepEqual(r.raw.layers, [0]);
    assert.equal(await resolveAutoLayer(m, r, prompts), r, "resolved hparams come back unchanged");
  });
});

Deno.test("tracing on two devices (layers 0–2 and 3–5) equals one device bit for bit", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const ref: Json = JSON.parse(await Deno.readTextFile(`${dir}/trace_reference/trace.json`));
  const f = ref.facts[0];
  const fact = { inputIds: f.input_ids, subjectRange: f.subject_range, answerId: f.answer_id };
  const opts = { noise: { seed: 1, level: ref.noise_level }, window: 3, tokens: [1, 4] };
  const grids = [];
  for (const devices of [1, "0,0,0,1,1,1"]) {
    const m = await loadModel(dir, { precision: "f32", devices, quiet: true });
    try {
      assert.equal(m.net.devices.length, devices === 1 ? 1 : 2);
      grids.push(await traceFact(m.net, fact, opts));
    } finally {
      await m.dispose();
    }
  }
  assert.deepEqual(grids[1].scores, grids[0].scores);
  assert.equal(grids[1].highScore, grids[0].highScore);
  assert.deepEqual(grids[1].lowScorePerSample, grids[0].lowScorePerSample);
});
