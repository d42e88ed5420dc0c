import assert from "node:assert/strict";
import { Gpu } from "../../lib/gpu/device.ts";
import { type LoadedModel, loadModel } from "../../lib/model/load.ts";
import { greedyGenerate, greedyGenerateBatch } from "../../lib/model/generate.ts";
import { padBatch, type Transformer } from "../../lib/model/transformer.ts";
import type { Precision } from "../../lib/model/precision.ts";
import { sharedPath } from "../_util.ts";

interface Reference {
  cases: { input_ids: number[][]; lengths: number[] }[];
  generation: { input_ids: number[]; max_new_tokens: number; new_token_ids: number[] };
}

// Two devices opened once for the whole file: pipelines compile once per device and dtype (slow on
// lavapipe), and every model below is loaded onto them.
let gpus: Promise<Gpu[]> | null = null;
const devices = () => gpus ??= Gpu.openMany(2, { quiet: true });

/** Loads onto the shared devices (`n` of them) and releases the weights afterwards. */
async function withModel(
  dir: string,
  precision: Precision,
  n: 1 | 2,
  fn: (m: LoadedModel) => Promise<void>,
): Promise<void> {
  const m = await loadModel(dir, { precision, gpus: (await devices()).slice(0, n), quiet: true });
  try {
    await fn(m);
  } finally {
    releaseWeights(m.net);
    await m.dispose();
  }
}

function releaseWeights(net: Transformer): void {
  net.embed.dispose();
  net.positions?.dispose();
  for (const b of net.blocks) {
    for (const n of [b.ln1, b.ln2, b.qNorm, b.kNorm]) n?.w.dispose(), n?.b?.dispose();
    for (const l of [b.q, b.k, b.v, b.o, b.mlpIn, b.mlpGate, b.mlpOut]) l?.w.dispose(), l?.b?.dispose();
  }
  net.finalNorm.w.dispose(), net.finalNorm.b?.dispose(), net.lmHead.w.dispose(), net.lmHead.b?.dispose();
}

const FIXTURES = [
  "gpt2-tiny",
  "gpt2-tiny-f16",
  "gptj-tiny",
  "llama-tiny-gqa",
  "llama-tiny-gqa-sharded",
  "mistral-tiny",
  "llama3-tiny-rope-scaled",
  "llama3.2-tiny-tied",
  "qwen2-tiny",
  "qwen2-tiny-tied",
  "qwen3-tiny",
];

for (const fixture of FIXTURES) {
  Deno.test(`KV-cache generation ${fixture}: reference tokens, recompute path, batches, EOS, position limit`, async () => {
    const dir = sharedPath(`models/fixtures/${fixture}`);
    if (!dir) return;
    const ref: Reference = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
    const g = ref.generation;
    const want = g.new_token_ids;
    const opts = { maxNewTokens: g.max_new_tokens };
    await withModel(dir, "f32", 1, async ({ net }) => {
      // f32: the fixtures' smallest top-1/top-2 margin (0.017) is ~300x the f32 logit error, so the tokens are
      // exact. mistral-tiny's 16 tokens cross its sliding window of 8.
      const cached = await greedyGenerate(net, g.input_ids, opts);
      assert.deepEqual(cached, want, "KV cache vs reference");
      assert.deepEqual(
        await greedyGenerate(net, g.input_ids, { ...opts, kvCache: false }),
        want,
        "recompute",
      );

      // The cached step's logits equal a full forward's last row (not only their argmax).
      const seq = [...g.input_ids, ...want.slice(0, 4)];
      const cache = net.createKvCache(1, seq.length);
      try {
        (await net.forwardCached(padBatch([seq.slice(0, -1)]), cache)).dispose();
        const step = await net.forwardCached(padBatch([seq.slice(-1)]), cache);
        const full = await net.forward(padBatch([seq]), { logitRows: "last" });
        const a = await step.read(), b = await full.logits.read();
        step.dispose(), full.logits.dispose();
        // f32 logits of magnitude ≤ ~3 through a few layers: observed |Δ| ~1e-6; the fixture README's f32
        // tolerance 5e-5 bounds the difference of two f32 evaluations of the same formula.
        let d = 0;
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        assert.ok(d <= 5e-5, `cached step vs full forward: max |Δlogit| ${d}`);
      } finally {
        cache.dispose();
      }

      // A right-padded batch of prompts of different lengths: each row as when generated alone. Row 2 is a
      // one-token prompt, row 3 the reference prompt again (its own row must not see the others).
      const prompts = [
        g.input_ids.slice(0, 3),
        [...ref.cases[0].input_ids[0].slice(0, ref.cases[0].lengths[0])],
        g.input_ids.slice(0, 1),
        g.input_ids,
      ];
      const batch = await greedyGenerateBatch(net, prompts, opts);
      assert.deepEqual(batch[3], want, "batched row equals the reference");
      for (let r = 0; r < 3; r++) {
        assert.deepEqual(batch[r], await greedyGenerate(net, prompts[r], opts), `batch row ${r} vs alone`);
      }
      assert.deepEqual(
        await greedyGenerateBatch(net, prompts, { ...opts, kvCache: false }),
        batch,
        "batch recompute",
      );

      // EOS stops one row (included) while the other rows go on; the position limit caps the sequence read.
      const eos = want[3];
      const stopped = await greedyGenerateBatch(net, [g.input_ids, prompts[2]], { ...opts, eosId: eos });
      assert.deepEqual(stopped[0], want.slice(0, want.indexOf(eos) + 1), "EOS row");
      assert.deepEqual(stopped[1], cutAt(batch[2], eos), "the other row");
      const maxPositions = g.input_ids.length + 3; // sequences of length P … P+3 are read: 4 tokens
      for (const kvCache of [true, false]) {
        const capped = await greedyGenerateBatch(net, [g.input_ids, prompts[2]], {
          ...opts,
          maxPositions,
          kvCache,
        });
        assert.deepEqual(capped[0], want.slice(0, 4), `position limit (kvCache ${kvCache})`);
        // the one-token prompt reads sequences of length 1 … maxPositions: maxPositions tokens (< 10)
        assert.deepEqual(capped[1], batch[2].slice(0, maxPositions), `short row (kvCache ${kvCache})`);
      }
      await assert.rejects(() => greedyGenerate(net, g.input_ids, { ...opts, maxPositions: 3 }), /more than/);
      assert.deepEqual(await greedyGenerate(net, g.input_ids, { maxNewTokens: 0 }), []);
    });

    // Layers split over two devices (caches on each layer's device): same tokens.
    await withModel(dir, "f32", 2, async ({ net }) => {
      assert.equal(new Set(net.layerDevice).size, 2);
      assert.deepEqual(await greedyGenerate(net, g.input_ids, opts), want, "two devices");
    });

    // f16 storage may flip a near-tie late in the sequence (see forward_test): the first tokens agree.
    await withModel(dir, "f16", 1, async ({ net }) => {
      const got = await greedyGenerate(net, g.input_ids, opts);
      assert.deepEqual(got.slice(0, 3), want.slice(0, 3), "f16 first tokens");
    });
  });
}

/** ids up to and including the first `eos`. */
function cutAt(ids: number[], eos: number): number[] {
  const i = ids.indexOf(eos);
  return i < 0 ? ids : ids.slice(0, i + 1);
}

Deno.test("KV-cache generation completes known facts on tiny-gpt2-counterfact like recomputation", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  const facts: { prompt: string; target_true: string; rewrite_top1: boolean }[] =
    JSON.parse(await Deno.readTextFile(`${dir}/facts.json`)).facts;
  await withModel(dir, "f32", 1, async ({ net, tokenizer }) => {
    const tok = tokenizer!;
    const known = facts.filter((f) => f.rewrite_top1).slice(0, 2);
    const prompts = known.map((f) => tok.encode(f.prompt));
    const opts = { maxNewTokens: 6 };
    const cached = await greedyGenerateBatch(net, prompts, opts);
    known.forEach((f, r) => {
      const target = tok.encode(" " + f.target_true);
      assert.deepEqual(cached[r].slice(0, target.length), target, `${f.prompt} → ${tok.decode(cached[r])}`);
    });
    assert.deepEqual(await greedyGenerateBatch(net, prompts, { ...opts, kvCache: false }), cached);
  });
});

Deno.test("generate-test teardown: release the shared devices", async () => {
  if (gpus) { for (const g of await gpus) await g.destroy(); }
});
