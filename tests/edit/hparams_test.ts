import assert from "node:assert/strict";
import {
  applyOverrides,
  flagsForUpdate,
  HPARAM_KEYS,
  HparamsError,
  loadHparams,
  parseHparams,
  type RomeHparams,
} from "../../lib/edit/hparams.ts";
import { sharedPath } from "../_util.ts";

const ROOT = new URL("../../", import.meta.url);
const CONFIGS = new URL("configs/", ROOT);
const SRC = "configs/ROME/x.yaml";

/** EasyEdit's hparams/ROME/gpt2-xl.yaml, written out (v_lr as PyYAML would read it: a "5e-1" string). */
const BASE = `alg_name: "ROME"
model_name: "./hugging_cache/gpt2-xl"
stats_dir: "./data/stats"
device: 0
layers: [17]
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: "5e-1"
v_loss_layer: 47
v_weight_decay: 0.5
clamp_norm_factor: 4
kl_factor: 0.0625
mom2_adjustment: false
context_template_length_params: [[5, 10], [10, 10]]
rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "transformer.wte"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
fp16: false
`;

/** BASE with keys replaced (value = YAML text), appended, or removed (null). */
function variant(changes: Record<string, string | null>): string {
  const lines = BASE.trimEnd().split("\n");
  const out: string[] = [];
  const done = new Set<string>();
  for (const line of lines) {
    const key = line.slice(0, line.indexOf(":"));
    if (key in changes) {
      done.add(key);
      if (changes[key] !== null) out.push(`${key}: ${changes[key]}`);
    } else out.push(line);
  }
  for (const [k, v] of Object.entries(changes)) if (!done.has(k) && v !== null) out.push(`${k}: ${v}`);
  return out.join("\n") + "\n";
}

function parseVariant(changes: Record<string, string | null>): RomeHparams {
  return parseHparams(variant(changes), SRC);
}

/** Asserts that parsing throws an HparamsError with exactly this message, and returns it. */
function assertHparamsError(fn: () => unknown, message: string | RegExp, key?: string): HparamsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof HparamsError, `expected HparamsError, got ${caught}`);
  if (typeof message === "string") assert.equal(caught.message, message);
  else assert.match(caught.message, message);
  if (key !== undefined) assert.equal(caught.key, key);
  return caught;
}

async function configFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ["ROME", "R-ROME"]) {
    for await (const e of Deno.readDir(new URL(`${dir}/`, CONFIGS))) {
      if (e.isFile && e.name.endsWith(".yaml")) out.push(`${dir}/${e.name}`);
    }
  }
  return out.sort();
}

Deno.test("hparams: the EasyEdit gpt2-xl file parses to typed camelCase values", () => {
  const hp = parseHparams(BASE, SRC);
  assert.equal(hp.algName, "ROME");
  assert.equal(hp.modelName, "./hugging_cache/gpt2-xl");
  assert.equal(hp.statsDir, "./data/stats");
  assert.equal(hp.device, 0);
  assert.deepEqual(hp.layers, [17]);
  assert.equal(hp.factToken, "subject_last");
  assert.equal(hp.vNumGradSteps, 20);
  assert.equal(hp.vLr, 0.5); // from the string "5e-1"
  assert.equal(hp.vLossLayer, 47);
  assert.equal(hp.vWeightDecay, 0.5);
  assert.equal(hp.clampNormFactor, 4);
  assert.equal(hp.klFactor, 0.0625);
  assert.equal(hp.mom2Adjustment, false);
  assert.deepEqual(hp.contextTemplateLengthParams, [[5, 10], [10, 10]]);
  assert.equal(hp.rewriteModuleTmp, "transformer.h.{}.mlp.c_proj");
  assert.equal(hp.layerModuleTmp, "transformer.h.{}");
  assert.equal(hp.mlpModuleTmp, "transformer.h.{}.mlp");
  assert.equal(hp.attnModuleTmp, "transformer.h.{}.attn");
  assert.equal(hp.lnFModule, "transformer.ln_f");
  assert.equal(hp.lmHeadModule, "transformer.wte");
  assert.equal(hp.mom2Dataset, "wikipedia");
  assert.equal(hp.mom2NSamples, 100000);
  assert.equal(hp.mom2Dtype, "float32");
  assert.equal(hp.modelParallel, false);
  assert.equal(hp.fp16, false);
  // Defaults of optional keys.
  assert.equal(hp.maxLength, 40);
  assert.equal(hp.batchSize, 1);
  assert.equal(hp.precision, "f32");
  assert.equal(hp.devices, 1);
  assert.equal(hp.update, "rome");
  assert.equal(hp.statsCorpus, undefined);
  assert.equal(hp.seed, 0);
  assert.equal(hp.lossBreak, 0.05);
  assert.deepEqual(
    [hp.originalImplementation, hp.enableRandomPrefixKeys, hp.enablePromptKeys],
    [true, false, false],
  );
  assert.equal(hp.source, SRC);
  // The raw mapping is kept as written.
  assert.equal(hp.raw.v_lr, "5e-1");
  assert.equal(Object.keys(hp.raw).length, 25);
});

Deno.test("hparams: numbers and booleans written as strings are accepted", () => {
  const hp = parseVariant({
    v_lr: '"1e-1"',
    v_num_grad_steps: '"25"',
    v_weight_decay: '"1e-3"',
    clamp_norm_factor: '" 4.0 "',
    kl_factor: '".0625"',
    layers: '["5"]',
    mom2_n_samples: '"1e5"',
    context_template_length_params: '[["5", "10"]]',
    fp16: "yes", // YAML 1.2 reads this as a string; PyYAML (EasyEdit) as true
    model_parallel: '"off"',
    seed: '"7"',
  });
  assert.equal(hp.vLr, 0.1);
  assert.equal(hp.vNumGradSteps, 25);
  assert.equal(hp.vWeightDecay, 1e-3);
  assert.equal(hp.clampNormFactor, 4);
  assert.equal(hp.klFactor, 0.0625);
  assert.deepEqual(hp.layers, [5]);
  assert.equal(hp.mom2NSamples, 100000);
  assert.deepEqual(hp.contextTemplateLengthParams, [[5, 10]]);
  assert.equal(hp.fp16, true);
  assert.equal(hp.modelParallel, false);
  assert.equal(hp.seed, 7);
  // Unquoted scientific notation is a YAML number already.
  assert.equal(parseVariant({ v_lr: "5e-1" }).vLr, 0.5);
});

Deno.test("hparams: wrong types name the file and the key", () => {
  assertHparamsError(
    () => parseVariant({ v_lr: "fast" }),
    `${SRC}: v_lr: expected a number, got "fast"`,
    "v_lr",
  );
  assertHparamsError(
    () => parseVariant({ v_num_grad_steps: "2.5" }),
    `${SRC}: v_num_grad_steps: expected a positive integer, got 2.5`,
  );
  assertHparamsError(
    () => parseVariant({ v_num_grad_steps: "0" }),
    `${SRC}: v_num_grad_steps: expected a positive integer, got 0`,
  );
  assertHparamsError(() => parseVariant({ v_lr: "-1" }), `${SRC}: v_lr: expected a positive number, got -1`);
  assertHparamsError(() => parseVariant({ v_lr: ".inf" }), `${SRC}: v_lr: expected a number, got Infinity`);
  assertHparamsError(
    () => parseVariant({ kl_factor: "[1]" }),
    `${SRC}: kl_factor: expected a number, got a list [1]`,
  );
  assertHparamsError(
    () => parseVariant({ mom2_adjustment: "maybe" }),
    `${SRC}: mom2_adjustment: expected true or false, got "maybe"`,
  );
  assertHparamsError(() => parseVariant({ fp16: "1" }), `${SRC}: fp16: expected true or false, got 1`);
  assertHparamsError(
    () => parseVariant({ model_name: "12" }),
    `${SRC}: model_name: expected a string, got 12`,
  );
  assertHparamsError(
    () => parseVariant({ device: "-1" }),
    `${SRC}: device: expected a non-negative integer, got -1`,
  );
  assertHparamsError(
    () => parseVariant({ layers: "17" }),
    /^configs\/ROME\/x\.yaml: layers: expected a non-empty list/,
  );
  assertHparamsError(
    () => parseVariant({ layers: "[]" }),
    /: layers: expected a non-empty list of layer indices/,
  );
  assertHparamsError(
    () => parseVariant({ layers: "[3, x]" }),
    `${SRC}: layers[1]: expected an integer, got "x"`,
    "layers[1]",
  );
  assertHparamsError(() => parseVariant({ layers: "[3, 3]" }), `${SRC}: layers: layer 3 is listed twice`);
  assertHparamsError(
    () => parseVariant({ context_template_length_params: "[[5, 10], [10]]" }),
    `${SRC}: context_template_length_params[1]: expected a [length, count] pair, got a list [10]`,
  );
  assertHparamsError(
    () => parseVariant({ context_template_length_params: "[[0, 10]]" }),
    `${SRC}: context_template_length_params[0]: expected a positive token length, got 0`,
  );
  assertHparamsError(
    () => parseVariant({ fact_token: "subject_middle" }),
    `${SRC}: fact_token: expected one of "subject_first", "subject_last", "subject_first_after_last", "last", ` +
      `got "subject_middle"`,
  );
  assertHparamsError(
    () => parseVariant({ alg_name: "MEMIT" }),
    `${SRC}: alg_name: expected one of "ROME", "R-ROME", got "MEMIT"`,
  );
  assertHparamsError(
    () => parseVariant({ mom2_dtype: "float" }),
    /^configs\/ROME\/x\.yaml: mom2_dtype: expected one of "float32"/,
  );
  assertHparamsError(
    () => parseVariant({ rewrite_module_tmp: '"transformer.h.17.mlp.c_proj"' }),
    /: rewrite_module_tmp: expected a module name template with one "\{\}"/,
  );
  assertHparamsError(
    () => parseVariant({ ln_f_module: '"transformer.h.{}.ln"' }),
    /: ln_f_module: expected a module name/,
  );
  assertHparamsError(
    () => parseVariant({ precision: "bf16" }),
    `${SRC}: precision: expected one of "f32", "f16", "mixed", got "bf16"`,
  );
  assertHparamsError(
    () => parseVariant({ update: "memit" }),
    `${SRC}: update: expected one of "rome", "r-rome", "p-rome", got "memit"`,
  );
  assertHparamsError(
    () => parseVariant({ batch_size: "4" }),
    `${SRC}: batch_size: ROME edits one request at a time: expected 1, got 4`,
  );
  assertHparamsError(
    () => parseVariant({ stats_corpus: "null" }),
    `${SRC}: stats_corpus: expected a string, got null`,
  );
});

Deno.test("hparams: unknown keys are errors naming the file and key, with a hint", () => {
  assertHparamsError(
    () => parseVariant({ v_lrr: "0.1" }),
    `${SRC}: v_lrr: unknown key (did you mean v_lr?)`,
    "v_lrr",
  );
  assertHparamsError(() => parseVariant({ colour: "red" }), `${SRC}: colour: unknown key`, "colour");
  // MEMIT's keys are not ROME's.
  assertHparamsError(
    () => parseVariant({ mom2_update_weight: "15000" }),
    /: mom2_update_weight: unknown key/,
  );
});

Deno.test("hparams: missing required keys are errors naming the file and the keys", () => {
  assertHparamsError(() => parseVariant({ v_lr: null }), `${SRC}: v_lr: missing required key`, "v_lr");
  assertHparamsError(
    () => parseVariant({ layers: null, mom2_dtype: null }),
    `${SRC}: layers, mom2_dtype: missing required keys`,
  );
  // Optional EasyEdit keys (model_name, stats_dir, device, fp16, model_parallel, max_length) may be absent.
  const hp = parseVariant({
    model_name: null,
    stats_dir: null,
    device: null,
    fp16: null,
    model_parallel: null,
  });
  assert.equal(hp.modelName, undefined);
  assert.equal(hp.statsDir, "./data/stats");
});

Deno.test("hparams: malformed YAML and non-mapping documents", () => {
  assertHparamsError(
    () => parseHparams("alg_name: [ROME\n", SRC),
    /^configs\/ROME\/x\.yaml:\d+:\d+: invalid YAML: /,
  );
  assertHparamsError(
    () => parseHparams(BASE + "v_lr: 0.1\n", SRC),
    /^configs\/ROME\/x\.yaml:\d+:\d+: invalid YAML: Map keys must be unique$/,
  );
  assertHparamsError(() => parseHparams("", SRC), `${SRC}: expected a mapping of hyper-parameters, got null`);
  assertHparamsError(
    () => parseHparams("- 1\n- 2\n", SRC),
    /^configs\/ROME\/x\.yaml: expected a mapping of hyper-parameters, got a list/,
  );
});

Deno.test("hparams: fp16 maps to precision f16 unless precision is given", () => {
  assert.equal(parseVariant({ fp16: "true" }).precision, "f16");
  assert.equal(parseVariant({ fp16: "false" }).precision, "f32");
  assert.equal(parseVariant({ fp16: "true", precision: "mixed" }).precision, "mixed");
  assert.equal(parseVariant({ fp16: "true", precision: "f32" }).precision, "f32");
  assert.equal(parseVariant({ precision: "mixed" }).precision, "mixed");
});

Deno.test("hparams: devices is a count, a per-layer list or a layer → device mapping", () => {
  assert.equal(parseVariant({ devices: "2" }).devices, 2);
  assert.deepEqual(parseVariant({ devices: "[0, 0, 1]" }).devices, [0, 0, 1]);
  assert.deepEqual(parseVariant({ devices: '"0,0,1,1"' }).devices, [0, 0, 1, 1]);
  assert.deepEqual(parseVariant({ devices: "{1: 1, 0: 0, 2: 1}" }).devices, [0, 1, 1]);
  assertHparamsError(
    () => parseVariant({ devices: "0" }),
    `${SRC}: devices: expected a positive device count, got 0`,
  );
  assertHparamsError(
    () => parseVariant({ devices: "{0: 0, 5: 1}" }),
    /: devices: mapping keys must be the layers 0\.\.1, got "5"/,
  );
  assertHparamsError(
    () => parseVariant({ devices: "[0, -1]" }),
    `${SRC}: devices: layer 1: expected a device index ≥ 0, got -1`,
  );
  assertHparamsError(() => parseVariant({ devices: "gpu" }), /: devices: expected a device count/);
});

Deno.test("hparams: update variant from alg_name and the R-ROME flags", () => {
  assert.equal(parseVariant({}).update, "rome");
  assert.equal(parseVariant({ alg_name: "R-ROME" }).update, "r-rome");
  const flags = (o: string, r: string, p: string) =>
    parseVariant({
      alg_name: "R-ROME",
      original_implementation: o,
      enable_random_prefix_keys: r,
      enable_prompt_keys: p,
    }).update;
  // The reference behaviour: compute_u averages keys if original_implementation or random prefixes;
  // compute_v uses the averaged key and value iff enable_random_prefix_keys.
  assert.equal(flags("false", "true", "false"), "r-rome");
  assert.equal(flags("true", "true", "false"), "r-rome");
  assert.equal(flags("true", "true", "true"), "r-rome");
  assert.equal(flags("true", "false", "false"), "rome");
  assert.equal(flags("true", "false", "true"), "rome");
  assert.equal(flags("false", "false", "true"), "p-rome");
  assertHparamsError(
    () => flags("false", "true", "true"),
    /: enable_prompt_keys: enable_prompt_keys and enable_random_prefix_keys are both true/,
  );
  assertHparamsError(() => flags("false", "false", "false"), /: enable_prompt_keys: .* are both false/);
  // Missing flags take EasyEdit's defaults (original false, random true, prompt false).
  assert.equal(parseVariant({ alg_name: "R-ROME", original_implementation: "false" }).update, "r-rome");
});

Deno.test("hparams: R-ROME flag corner cases", () => {
  // enable_prompt_keys alone with the random-prefix default on is the references' "both enabled" error.
  assertHparamsError(
    () => parseVariant({ alg_name: "R-ROME", enable_prompt_keys: "true" }),
    /enable_prompt_keys: enable_prompt_keys and enable_random_prefix_keys are both true/,
  );
  assert.equal(
    parseVariant({ alg_name: "R-ROME", enable_prompt_keys: "true", enable_random_prefix_keys: "false" })
      .update,
    "p-rome",
  );
  assert.equal(
    parseVariant({ alg_name: "R-ROME", original_implementation: "true", enable_random_prefix_keys: "false" })
      .update,
    "rome",
  );
  // Flags belong to R-ROME.
  assertHparamsError(
    () => parseVariant({ enable_prompt_keys: "false" }),
    /^configs\/ROME\/x\.yaml: enable_prompt_keys: only valid with alg_name "R-ROME"/,
  );
  // An explicit update wins over alg_name, must agree with flags written beside it.
  assert.equal(parseVariant({ update: "p-rome" }).update, "p-rome");
  assert.equal(parseVariant({ alg_name: "R-ROME", update: "rome" }).update, "rome");
  assert.equal(
    parseVariant({ alg_name: "R-ROME", update: "r-rome", enable_random_prefix_keys: "true" }).update,
    "r-rome",
  );
  assertHparamsError(
    () => parseVariant({ alg_name: "R-ROME", update: "p-rome", enable_random_prefix_keys: "true" }),
    `${SRC}: update: "p-rome" contradicts the R-ROME flags enable_random_prefix_keys (they select "r-rome")`,
  );
  // p-rome needs a subject token.
  assertHparamsError(
    () => parseVariant({ update: "p-rome", fact_token: "last" }),
    /: fact_token: the "p-rome" update \(prompt keys\) needs a subject token/,
  );
  assert.equal(parseVariant({ update: "r-rome", fact_token: "last" }).factToken, "last");
  // The typed flags always describe the resolved update.
  for (const u of ["rome", "r-rome", "p-rome"] as const) {
    const hp = parseVariant({ update: u });
    assert.deepEqual(
      {
        originalImplementation: hp.originalImplementation,
        enableRandomPrefixKeys: hp.enableRandomPrefixKeys,
        enablePromptKeys: hp.enablePromptKeys,
      },
      flagsForUpdate(u),
    );
  }
});

Deno.test("hparams: applyOverrides converts CLI strings, recomputes derived values, labels errors", () => {
  const hp = parseHparams(BASE, SRC);
  const o = applyOverrides(hp, {
    v_lr: "0.1",
    layers: "[3]",
    vNumGradSteps: 50,
    fp16: "true",
    fact_token: "last",
  });
  assert.equal(o.vLr, 0.1);
  assert.deepEqual(o.layers, [3]);
  assert.equal(o.vNumGradSteps, 50);
  assert.equal(o.precision, "f16");
  assert.equal(o.factToken, "last");
  assert.equal(o.raw.v_num_grad_steps, 50);
  assert.equal(hp.vLr, 0.5, "the input is not modified");
  assert.equal(hp.raw.v_lr, "5e-1");
  // String-typed keys keep strings that look like other things.
  assert.equal(applyOverrides(hp, { model_name: "123" }).modelName, "123");
  // null removes a key: back to its default, or missing if it is required.
  const withPrecision = applyOverrides(hp, { precision: "mixed" });
  assert.equal(withPrecision.precision, "mixed");
  assert.equal(applyOverrides(withPrecision, { precision: null }).precision, "f32");
  assertHparamsError(() => applyOverrides(hp, { v_lr: null }), `${SRC}: v_lr: missing required key`);
  assertHparamsError(
    () => applyOverrides(hp, { v_lr: "fast" }),
    `${SRC} (override): v_lr: expected a number, got "fast"`,
  );
  assertHparamsError(
    () => applyOverrides(hp, { vv_lr: "1" }),
    `${SRC} (override): vv_lr: unknown key (did you mean v_lr?)`,
  );
  // Update precedence: the later source wins.
  const rr = parseVariant({
    alg_name: "R-ROME",
    enable_random_prefix_keys: "true",
    enable_prompt_keys: "false",
  });
  assert.equal(rr.update, "r-rome");
  assert.equal(applyOverrides(rr, { update: "p-rome" }).update, "p-rome");
  const pr = parseVariant({ alg_name: "R-ROME", update: "p-rome" });
  assert.equal(pr.update, "p-rome");
  assert.equal(
    applyOverrides(pr, { enable_random_prefix_keys: "false", original_implementation: "true" }).update,
    "rome",
  );
  assertHparamsError(
    () => applyOverrides(rr, { update: "rome", enable_random_prefix_keys: "true" }),
    /^configs\/ROME\/x\.yaml \(override\): update: "rome" contradicts the R-ROME flags/,
  );
});

Deno.test("hparams: every shipped config parses, with the variant its name says", async () => {
  const files = await configFiles();
  assert.ok(files.length >= 20, `only ${files.length} configs`);
  for (const rel of files) {
    const hp = await loadHparams(new URL(rel, CONFIGS).pathname);
    const [dir, name] = rel.split("/");
    assert.equal(hp.algName, dir, rel);
    const expected = name.includes("p-rome") ? "p-rome" : dir === "ROME" ? "rome" : "r-rome";
    assert.equal(hp.update, expected, rel);
    // The EasyEdit keys are all written out (EasyEdit's dataclass requires them).
    for (const k of ["alg_name", "model_name", "stats_dir", "device"]) assert.ok(k in hp.raw, `${rel}: ${k}`);
    // Module templates name the architecture's modules.
    if (/llama|mistral|qwen/.test(name)) {
      assert.equal(hp.rewriteModuleTmp, "model.layers.{}.mlp.down_proj", rel);
      assert.equal(hp.lmHeadModule, "lm_head", rel);
    } else if (/gpt2/.test(name)) {
      assert.equal(hp.rewriteModuleTmp, "transformer.h.{}.mlp.c_proj", rel);
      assert.equal(hp.lmHeadModule, "transformer.wte", rel);
    } else assert.equal(hp.rewriteModuleTmp, "transformer.h.{}.mlp.fc_out", rel);
    assert.ok(Math.max(...hp.layers) <= hp.vLossLayer, rel);
  }
});

Deno.test("hparams: ported configs carry the reference repos' values", async () => {
  const load = (rel: string) => loadHparams(new URL(rel, CONFIGS).pathname);
  for (const dir of ["ROME", "R-ROME"]) {
    const g = await load(`${dir}/gpt2-xl.yaml`);
    assert.deepEqual([g.layers, g.vLossLayer, g.vNumGradSteps, g.vWeightDecay, g.mom2Adjustment], [
      [17],
      47,
      20,
      0.5,
      false,
    ]);
    const j = await load(`${dir}/gpt-j-6B.yaml`);
    assert.deepEqual([j.layers, j.vLossLayer, j.rewriteModuleTmp, j.lmHeadModule], [
      [5],
      27,
      "transformer.h.{}.mlp.fc_out",
      "lm_head",
    ]);
    for (const m of ["llama-2-7b", "llama-7b", "mistral-7b"]) {
      const l = await load(`${dir}/${m}.yaml`);
      assert.deepEqual(
        [l.layers, l.vLossLayer, l.vNumGradSteps, l.vLr, l.vWeightDecay, l.clampNormFactor, l.klFactor],
        [[5], 31, 25, 0.5, 1e-3, 4, 0.0625],
        `${dir}/${m}`,
      );
      assert.equal(l.lnFModule, "model.norm");
    }
  }
  // Llama-3.x, Qwen2.5 and Qwen3 (EasyEdit's llama3-8b, llama3.2-3b and qwen2.5-7b files; see configs/README.md)
  const newer: [string, number, string][] = [
    ["llama3-8b", 31, "f16"],
    ["llama3.2-3b", 31, "f16"],
    ["qwen2.5-7b", 27, "f32"],
    ["qwen3-8b", 35, "f32"],
  ];
  for (const dir of ["ROME", "R-ROME"]) {
    for (const [m, lossLayer, precision] of newer) {
      const l = await load(`${dir}/${m}.yaml`);
      const want = dir === "R-ROME" && m === "llama3.2-3b" ? 27 : lossLayer;
      assert.deepEqual(
        [l.layers, l.vLossLayer, l.vNumGradSteps, l.vLr, l.vWeightDecay, l.clampNormFactor, l.klFactor],
        [[5], want, 25, 0.5, 1e-3, 4, 0.0625],
        `${dir}/${m}`,
      );
      assert.deepEqual(
        [l.precision, l.mom2Adjustment, l.lnFModule],
        [precision, false, "model.norm"],
        `${dir}/${m}`,
      );
    }
  }
  // EasyEdit's R-ROME Llama file sets fp16: true.
  assert.equal((await load("R-ROME/llama-2-7b.yaml")).precision, "f16");
  assert.equal((await load("ROME/llama-2-7b.yaml")).precision, "f32");
  // kmeng01/rome's values use the covariance.
  assert.equal((await load("ROME/gpt2-xl-mom2.yaml")).mom2Adjustment, true);
  assert.equal((await load("ROME/gpt-j-6B-mom2.yaml")).mom2Adjustment, true);
});

Deno.test("hparams: the shared-model configs reproduce the ROME oracle's hparams", async () => {
  for (const model of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
    const oraclePath = sharedPath(`models/${model}/rome_reference/oracle.json`);
    if (!oraclePath) return;
    const oracle = JSON.parse(await Deno.readTextFile(oraclePath));
    const want = oracle.hparams as Record<string, unknown>;
    for (const rel of [`ROME/${model}.yaml`, `R-ROME/${model}.yaml`, `R-ROME/${model}-p-rome.yaml`]) {
      const hp = await loadHparams(new URL(rel, CONFIGS).pathname);
      for (const [k, v] of Object.entries(want)) {
        if (HPARAM_KEYS.includes(k)) assert.deepEqual(typedValue(hp, k), v, `${rel}: ${k}`);
        // The stats file / count / solve method describe the oracle's own C, not a setting.
        else {assert.ok(
            ["mom2_file", "mom2_count", "mom2_solve"].includes(k),
            `${rel}: oracle key ${k} not checked`,
          );}
      }
      assert.deepEqual(hp.layers, [oracle.layer], rel);
      assert.equal(
        `${hp.rewriteModuleTmp.replace("{}", String(oracle.layer))}.weight`,
        oracle.edited_weight,
        rel,
      );
      assert.equal(hp.mom2Adjustment, true, rel);
      assert.equal(hp.precision, "f32", rel);
      assert.ok(oracle.variants.includes(hp.update), rel);
      assert.equal(hp.vLossLayer, 5, rel); // 6 layers
      // stats_corpus is relative to the working directory (the repo root): the oracle's corpus.
      const corpus = sharedPath("data/corpus/wikitext-2/wiki.test.tokens");
      if (corpus) assert.equal(new URL(hp.statsCorpus!, ROOT).pathname, corpus, rel);
    }
  }
});

/** The typed value of a YAML key (its camelCase field), for comparison with the oracle's JSON. */
function typedValue(hp: RomeHparams, key: string): unknown {
  const field = key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()) as keyof RomeHparams;
  return hp[field];
}

Deno.test("hparams: tuned configs carry the READMEs' tuned settings", async () => {
  const load = (rel: string) => loadHparams(new URL(rel, CONFIGS).pathname);
  const g = await load("R-ROME/tiny-gpt2-counterfact-tuned.yaml");
  assert.deepEqual([g.layers, g.factToken, g.vNumGradSteps, g.update, g.clampNormFactor], [
    [0],
    "last",
    20,
    "r-rome",
    4,
  ]);
  const gs = await load("R-ROME/tiny-gpt2-counterfact-tuned-specific.yaml");
  assert.deepEqual([gs.layers, gs.factToken, gs.vNumGradSteps, gs.update], [
    [0],
    "subject_last",
    50,
    "r-rome",
  ]);
  const l = await load("R-ROME/tiny-llama-counterfact-tuned.yaml");
  assert.deepEqual([l.layers, l.factToken, l.vNumGradSteps, l.update], [[1], "subject_last", 50, "r-rome"]);
  assert.equal(l.rewriteModuleTmp, "model.layers.{}.mlp.down_proj");
});

Deno.test("hparams: loadHparams appends .yaml like EasyEdit and reports unreadable files", async () => {
  const base = new URL("ROME/gpt2-xl", CONFIGS).pathname;
  const hp = await loadHparams(base);
  assert.equal(hp.source, `${base}.yaml`);
  await assert.rejects(() => loadHparams(`${base}-nope.yaml`), (e: unknown) => {
    assert.ok(e instanceof HparamsError);
    assert.match(e.message, /gpt2-xl-nope\.yaml: cannot read: /);
    return true;
  });
  await assert.rejects(() => loadHparams(`${base}-nope`), /also tried .*gpt2-xl-nope\.yaml/);
  // Errors from a file name the file.
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/bad.yaml`;
    await Deno.writeTextFile(p, variant({ v_lr: "fast" }));
    await assert.rejects(() => loadHparams(p), { message: `${p}: v_lr: expected a number, got "fast"` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
