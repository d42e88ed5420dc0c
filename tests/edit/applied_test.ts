/**
 * AppliedEdit and its one on-disk format: a rank-2 delta round-trips through the file bit for bit and is
 * applied as W += Σ uᵢ rᵢᵀ in the weight's layout (checked against a host computation), multi-layer
 * entries of one batch coexist, restore is exact, and every malformed file or mismatching edit is refused
 * before anything is applied. Runs on a random tiny Llama (no ../shared needed), in a few seconds.
 */
import assert from "node:assert/strict";
import { randomModel } from "../../lib/testing/random_model.ts";
import {
  type AppliedEdit,
  applyEdits,
  linearDims,
  rankOneDelta,
  restoreWeights,
} from "../../lib/edit/applied.ts";
import { DELTAS_FILE, readEdits, saveEdits, writeEditsFile } from "../../lib/edit/edits_io.ts";
import { openSafetensors, writeSafetensors } from "../../lib/model/safetensors.ts";
import { randArray, testGpu } from "../_util.ts";

const TINY = {
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 300,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
};

Deno.test("AppliedEdit: rank-k deltas save, reload and apply exactly; bad files and edits change nothing", async () => {
  const gpu = await testGpu();
  const tmp = await Deno.makeTempDir({ prefix: "keg_applied_" });
  const model = await randomModel(TINY, { seed: 3, gpus: [gpu], quiet: true });
  try {
    const down = (l: number) => model.net.blocks[l].mlpOut;
    const [dIn, dOut] = linearDims(down(0));
    assert.deepEqual([dIn, dOut], [48, 32]);
    const req = { prompt: "{} is in", subject: "Angola", targetNew: "Oz" };
    const rank2: AppliedEdit = {
      method: "memit",
      layer: 0,
      weightName: down(0).name,
      delta: { rank: 2, dIn, dOut, u: randArray(2 * dIn, 1, 0.1), r: randArray(2 * dOut, 2, 0.1) },
      requests: [req, { ...req, subject: "Peru" }],
      fingerprint: model.fingerprint,
      batch: 0,
    };
    const layer1: AppliedEdit = {
      ...rank2,
      layer: 1,
      weightName: down(1).name,
      delta: rankOneDelta(randArray(dIn, 3, 0.1), randArray(dOut, 4, 0.1)),
    };
    const w0 = await down(0).w.read(), w1 = await down(1).w.read();
    // a temporary file left by a killed save is removed by the next save there
    await Deno.mkdir(`${tmp}/save`);
    await Deno.writeTextFile(`${tmp}/save/${DELTAS_FILE}.tmp-dead0001`, "partial");
    const path = await saveEdits(`${tmp}/save`, [rank2, layer1], { note: "test" });
    assert.deepEqual([...Deno.readDirSync(`${tmp}/save`)].map((e) => e.name), [DELTAS_FILE]);
    assert.equal(path, `${tmp}/save/${DELTAS_FILE}`);
    const back = await readEdits(`${tmp}/save`, model);
    assert.deepEqual(back, [rank2, layer1], "the file holds exactly the edits");
    await applyEdits(model, back);
    // host reference: W is [out, in] (Linear layout) → W[o, i] += Σ_k u[k, i] r[k, o]
    const want = Float64Array.from(w0);
    for (let k = 0; k < 2; k++) {
      for (let o = 0; o < dOut; o++) {
        for (let i = 0; i < dIn; i++) {
          want[o * dIn + i] += rank2.delta.u[k * dIn + i] * rank2.delta.r[k * dOut + o];
        }
      }
    }
    const got = await down(0).w.read();
    let worst = 0;
    for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j] - want[j]));
    assert.ok(worst < 1e-6, `rank-2 apply vs host: ${worst}`);
    assert.notDeepEqual(await down(1).w.read(), w1, "the layer-1 entry is applied too");
    await restoreWeights(model, back);
    assert.deepEqual(await down(0).w.read(), w0, "restore is exact");
    assert.deepEqual(await down(1).w.read(), w1, "restore is exact");

    // refused before anything is applied: a list whose second entry is bad leaves the first unapplied
    const bad = (patch: Partial<AppliedEdit>) => [rank2, { ...layer1, ...patch }];
    const cases: [AppliedEdit[], RegExp][] = [
      [bad({ fingerprint: "other" }), /another base model/],
      [bad({ weightName: "model.layers.1.mlp.nope.weight" }), /has no such weight.*down_proj/],
      [bad({ layer: 7 }), /layer 7 is outside 0\.\.1/],
      [
        bad({ delta: rankOneDelta(new Float32Array(dOut), new Float32Array(dIn)) }),
        /delta is 32×48.*is 48×32/,
      ],
      [bad({ delta: rankOneDelta(new Float32Array(dIn).fill(NaN), new Float32Array(dOut)) }), /NaN/],
      [bad({ delta: { ...layer1.delta, rank: 2 } }), /u has 48 values, expected rank 2/],
    ];
    for (const [edits, re] of cases) {
      await assert.rejects(() => applyEdits(model, edits), re);
      assert.deepEqual(await down(0).w.read(), w0, `nothing applied (${re})`);
    }
    await assert.rejects(
      () => writeEditsFile(`${tmp}/x.safetensors`, bad({ fingerprint: "other" })),
      /2 different base/,
    );

    // malformed files: each refused with the file and the field named
    const src = await openSafetensors(path);
    const meta = { ...src.metadata };
    const tensors = await Promise.all(
      src.names().map(async (name) => {
        const raw = await src.read(name);
        return { name, dtype: raw.dtype, shape: raw.shape, data: raw.bytes };
      }),
    );
    await src.close();
    const variant = async (
      name: string,
      m: Record<string, string | undefined>,
      t = tensors,
    ): Promise<string> => {
      const p = `${tmp}/${name}.safetensors`;
      const mm = Object.fromEntries(
        Object.entries({ ...meta, ...m }).filter(([, v]) => v !== undefined),
      ) as Record<
        string,
        string
      >;
      await writeSafetensors(p, t, mm);
      return p;
    };
    const files: [string, RegExp][] = [
      [await variant("nocount", { count: undefined }), /nocount\.safetensors: metadata count is missing/],
      [await variant("count0", { count: "0" }), /count0\.safetensors: metadata count 0 does not match/],
      [
        await variant("count3", { count: "3" }),
        /count3\.safetensors: metadata count 3 does not match.*missing/,
      ],
      [await variant("fmt", { format: "other" }), /fmt\.safetensors: not a keg edits file/],
      [
        await variant("layer", { "edit.0001.layer": "x" }),
        /layer\.safetensors: metadata edit\.0001\.layer must be/,
      ],
      [
        await variant("req", { "edit.0000.requests": "[{" }),
        /req\.safetensors: metadata edit\.0000\.requests is not valid JSON/,
      ],
      [
        await variant("reqf", { "edit.0000.requests": '[{"prompt":"x"}]' }),
        /reqf\.safetensors: edit\.0000\.requests\[0\]/,
      ],
      [await variant("tensor", { "edit.0001.tensor": "lm_head.weight" }), /has no such weight/],
      [
        await variant(
          "rank",
          {},
          tensors.map((t) => t.name === "edit.0000.r" ? { ...t, shape: [1, 64] } : t),
        ),
        /rank\.safetensors: edit\.0000: u has rank 2 but r has rank 1/,
      ],
    ];
    for (const [p, re] of files) await assert.rejects(() => readEdits(p, model), re);

    // the earlier keg-edits-v1 layout (rank-one vectors, one request) still reads
    await writeSafetensors(`${tmp}/v1.safetensors`, [
      { name: "edit.0000.u", dtype: "F32", shape: [dIn], data: layer1.delta.u },
      { name: "edit.0000.r", dtype: "F32", shape: [dOut], data: layer1.delta.r },
    ], {
      format: "keg-edits-v1",
      base_fingerprint: model.fingerprint,
      count: "1",
      "edit.0000.tensor": layer1.weightName,
      "edit.0000.layer": "1",
      "edit.0000.request": JSON.stringify(req),
      "edit.0000.update": "r-rome",
    });
    const [old] = await readEdits(`${tmp}/v1.safetensors`, model);
    assert.deepEqual(old, { ...layer1, method: "r-rome", requests: [req] });
  } finally {
    await model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});
