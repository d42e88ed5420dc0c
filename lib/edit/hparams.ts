/**
 * ROME / R-ROME hyper-parameters: EasyEdit's YAML files read unchanged, plus keg's own keys.
 *
 * Every key of EasyEdit's `ROMEHyperParams` / `R_ROMEHyperParams` is accepted under its EasyEdit name;
 * the parsed result is a typed camelCase {@linkcode RomeHparams} (each field documents its YAML key) that
 * also carries the raw mapping as written. Numbers may be written as strings (`v_lr: "5e-1"`, which
 * PyYAML reads as a string and EasyEdit converts), booleans also as PyYAML 1.1 words (`yes`/`no`/`on`/`off`).
 * An unknown key, a value of the wrong type or a missing required key raises {@linkcode HparamsError}
 * naming the file and the key, e.g. `configs/ROME/x.yaml: v_lr: expected a number, got "fast"`.
 *
 * keg's own keys (EasyEdit rejects them, so the ported configs do not use them):
 *
 * | key | values | default |
 * |---|---|---|
 * | `precision` | `f32` \| `f16` \| `mixed` | `f16` if `fp16: true`, else `f32` |
 * | `devices` | device count, or a per-layer device list / `{layer: device}` map | `1` |
 * | `update` | `rome` \| `r-rome` \| `p-rome` | from `alg_name` and the R-ROME flags (below) |
 * | `stats_corpus` | path of a text corpus for the covariance statistics (relative to the working directory, like EasyEdit's `stats_dir`) | none (the stats command's default) |
 * | `seed` | integer ≥ 0 for context-template sampling | `0` |
 * | `loss_break` | v* optimisation stops when the loss falls below it (EasyEdit hard-codes 5e-2) | `0.05` |
 *
 * ## The update variant
 *
 * - `rome` — original ROME: u = C⁻¹k* (k* averaged over the context templates), right vector from the
 *   bare prompt's key and value: r = (v* − v_prompt) / (k_prompt·u).
 * - `r-rome` — rebuilding-rome: the same u, r = (v* − v̄) / (k*·u) with k*, v̄ both averaged.
 * - `p-rome` — prompt keys: u = C⁻¹k_prompt, r = (v_prompt + δ − v_prompt) / (k_prompt·u).
 *
 * Without `update`: `alg_name: ROME` means `rome`. `alg_name: R-ROME` reads the flags of EasyEdit's
 * `R_ROMEHyperParams` (same names and meaning in scalable-model-editing/rebuilding-rome), missing ones taking
 * EasyEdit's defaults (`original_implementation: false`, `enable_random_prefix_keys: true`,
 * `enable_prompt_keys: false`), and maps them as the reference code behaves:
 *
 * | original_implementation | enable_random_prefix_keys | enable_prompt_keys | update |
 * |---|---|---|---|
 * | any | true | false | `r-rome` (the default) |
 * | true | true | true | `r-rome` (u and v both from the averaged keys) |
 * | true | false | any | `rome` |
 * | false | false | true | `p-rome` |
 * | false | equal flags | | error, as the references assert |
 *
 * The flags are only valid with `alg_name: R-ROME` (EasyEdit's ROME class rejects them). An explicit
 * `update` wins over `alg_name`; it must agree with any R-ROME flags written in the same file. The parsed
 * {@linkcode RomeHparams} always carries flags that describe the resolved `update` (see
 * {@linkcode flagsForUpdate}). `p-rome` with `fact_token: last` is an error (the references raise too).
 * @module
 */
// Inline npm specifier on purpose: a remote `import … from "<url>/mod.ts"` has no import map.
import { parse as parseYaml } from "npm:yaml@2.9.1";
import type { Precision } from "../model/precision.ts";

/** The algorithm names keg reads (`alg_name`). */
export type AlgName = "ROME" | "R-ROME";

/** The rank-one update variant (keg key `update`); see the module documentation. */
export type UpdateKind = "rome" | "r-rome" | "p-rome";

/**
 * Which token of a prompt supplies the key (`fact_token`), as in the references: the subject's first or
 * last token, the first token after the subject, or the prompt's last token.
 */
export type FactToken = "subject_first" | "subject_last" | "subject_first_after_last" | "last";

/**
 * Placement of the model's layers (keg key `devices`): a device count (layers split into contiguous
 * balanced groups) or one device index per layer.
 */
export type DevicesSpec = number | number[];

/** A bad hyper-parameter file: names the file (`source`) and, where there is one, the key. */
export class HparamsError extends Error {
  /** The file (or other source label) the hyper-parameters came from. */
  readonly source: string;
  /** The offending key, when the error is about one. */
  readonly key: string | undefined;
  constructor(source: string, key: string | undefined, message: string) {
    super(key === undefined ? `${source}: ${message}` : `${source}: ${key}: ${message}`);
    this.name = "HparamsError";
    this.source = source;
    this.key = key;
  }
}

/** How `layers: auto` was resolved: the causal-tracing evidence behind the chosen layer. */
export interface AutoLayerRecord {
  /** The chosen layer. */
  layer: number;
  /** Its MLP indirect effect minus the runner-up's. */
  margin: number;
  /** The runner-up layer. */
  runnerUp: number;
  /** Average MLP indirect effect per layer at the last subject token. */
  aie: number[];
  /** Facts traced. */
  facts: number;
  /** MLP window. */
  window: number;
  /** Noise scale (noise_factor × embedding std) and seed. */
  noiseLevel: number;
  seed: number;
}

/** ROME / R-ROME hyper-parameters, camelCase; each field names its YAML key. */
export interface RomeHparams {
  /** `alg_name`: "ROME" or "R-ROME". */
  algName: AlgName;
  /** `model_name`: model directory or hub id (optional in keg: the CLI's `--model` may give it). */
  modelName: string | undefined;
  /** `stats_dir`: directory of covariance statistics (default "./data/stats", EasyEdit's value). */
  statsDir: string;
  /** `device`: the device index for a single-device run (default 0). */
  device: number;
  /** `layers`: the layer(s) whose MLP down-projection is edited (empty until `layers: auto` is resolved). */
  layers: number[];
  /**
   * `layers: auto`: the edit layer is chosen by causal tracing (lib/edit/trace.ts `resolveAutoLayer`, which
   * `keg edit` and `keg eval` call) — the MLP layer with the largest indirect effect at the last subject token.
   */
  layersAuto?: boolean;
  /** How `layers: auto` was resolved (recorded in results). */
  autoLayer?: AutoLayerRecord;
  /** `fact_token`: the token whose MLP key is edited. */
  factToken: FactToken;
  /** `v_num_grad_steps`: maximal number of forwards of the v* optimisation (at most one fewer Adam steps). */
  vNumGradSteps: number;
  /** `v_lr`: Adam learning rate of δ. */
  vLr: number;
  /** `v_loss_layer`: the layer whose output is scored (the last layer; the references use max(this, layer)). */
  vLossLayer: number;
  /** `v_weight_decay`: weight of ‖δ‖ / ‖v‖² in the v* loss. */
  vWeightDecay: number;
  /** `clamp_norm_factor`: δ is kept within clamp_norm_factor·‖v‖. */
  clampNormFactor: number;
  /** `kl_factor`: weight of the KL term on the "{} is a" prompt. */
  klFactor: number;
  /** `mom2_adjustment`: use the covariance C (true) or the identity (false). */
  mom2Adjustment: boolean;
  /** `context_template_length_params`: [token length, count] pairs of sampled context prefixes. */
  contextTemplateLengthParams: [number, number][];
  /** `rewrite_module_tmp`: the edited module, `{}` = layer (e.g. "transformer.h.{}.mlp.c_proj"). */
  rewriteModuleTmp: string;
  /** `layer_module_tmp`: a transformer block, `{}` = layer. */
  layerModuleTmp: string;
  /** `mlp_module_tmp`: a block's MLP, `{}` = layer. */
  mlpModuleTmp: string;
  /** `attn_module_tmp`: a block's attention, `{}` = layer. */
  attnModuleTmp: string;
  /** `ln_f_module`: the final norm. */
  lnFModule: string;
  /** `lm_head_module`: the LM head (or the tied embedding). */
  lmHeadModule: string;
  /** `mom2_dataset`: name of the statistics corpus ("wikipedia", "wikitext", …). */
  mom2Dataset: string;
  /** `mom2_n_samples`: number of corpus sequences for the statistics. */
  mom2NSamples: number;
  /** `mom2_dtype`: dtype of the statistics ("float32", "float64", "float16", "bfloat16"). */
  mom2Dtype: "float32" | "float64" | "float16" | "bfloat16";
  /** `model_parallel`: EasyEdit's multi-GPU switch (recorded; keg places layers with `devices`). */
  modelParallel: boolean;
  /** `fp16`: EasyEdit's half-precision switch; sets `precision: f16` unless `precision` is given. */
  fp16: boolean;
  /** `max_length`: maximal token length used by evaluation (EasyEdit default 40). */
  maxLength: number;
  /** `batch_size`: EasyEdit's batch size; ROME edits one request at a time, so it must be 1. */
  batchSize: number;
  /** `original_implementation` (R-ROME): describes {@linkcode update} (see {@linkcode flagsForUpdate}). */
  originalImplementation: boolean;
  /** `enable_random_prefix_keys` (R-ROME): describes {@linkcode update}. */
  enableRandomPrefixKeys: boolean;
  /** `enable_prompt_keys` (R-ROME): describes {@linkcode update}. */
  enablePromptKeys: boolean;
  /** keg `precision`: storage precision of the run. */
  precision: Precision;
  /** keg `devices`: layer placement. */
  devices: DevicesSpec;
  /** keg `update`: the update variant. */
  update: UpdateKind;
  /** keg `stats_corpus`: text corpus for the covariance statistics, if given. */
  statsCorpus: string | undefined;
  /** keg `seed`: seed of context-template sampling. */
  seed: number;
  /** keg `loss_break`: the v* optimisation stops when its loss falls below this. */
  lossBreak: number;
  /** Where the values came from (a file path or a label). */
  source: string;
  /** The mapping as written (after overrides), before any conversion. */
  raw: Readonly<Record<string, unknown>>;
}

/** The R-ROME flag values that describe an update variant (what the references would need to run it). */
export function flagsForUpdate(
  update: UpdateKind,
): { originalImplementation: boolean; enableRandomPrefixKeys: boolean; enablePromptKeys: boolean } {
  switch (update) {
    case "rome":
      return { originalImplementation: true, enableRandomPrefixKeys: false, enablePromptKeys: false };
    case "r-rome":
      return { originalImplementation: false, enableRandomPrefixKeys: true, enablePromptKeys: false };
    case "p-rome":
      return { originalImplementation: false, enableRandomPrefixKeys: false, enablePromptKeys: true };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key table

type Kind =
  | "string"
  | "template"
  | "module"
  | "posInt"
  | "nonNegInt"
  | "posNumber"
  | "nonNegNumber"
  | "bool"
  | "layers"
  | "lengthParams"
  | "devices"
  | { oneOf: readonly string[] };

interface KeySpec {
  field: keyof RomeHparams;
  kind: Kind;
  required: boolean;
}

const KEYS: Readonly<Record<string, KeySpec>> = {
  alg_name: { field: "algName", kind: { oneOf: ["ROME", "R-ROME"] }, required: true },
  model_name: { field: "modelName", kind: "string", required: false },
  stats_dir: { field: "statsDir", kind: "string", required: false },
  device: { field: "device", kind: "nonNegInt", required: false },
  layers: { field: "layers", kind: "layers", required: true },
  fact_token: {
    field: "factToken",
    kind: { oneOf: ["subject_first", "subject_last", "subject_first_after_last", "last"] },
    required: true,
  },
  v_num_grad_steps: { field: "vNumGradSteps", kind: "posInt", required: true },
  v_lr: { field: "vLr", kind: "posNumber", required: true },
  v_loss_layer: { field: "vLossLayer", kind: "nonNegInt", required: true },
  v_weight_decay: { field: "vWeightDecay", kind: "nonNegNumber", required: true },
  clamp_norm_factor: { field: "clampNormFactor", kind: "posNumber", required: true },
  kl_factor: { field: "klFactor", kind: "nonNegNumber", required: true },
  mom2_adjustment: { field: "mom2Adjustment", kind: "bool", required: true },
  context_template_length_params: {
    field: "contextTemplateLengthParams",
    kind: "lengthParams",
    required: true,
  },
  rewrite_module_tmp: { field: "rewriteModuleTmp", kind: "template", required: true },
  layer_module_tmp: { field: "layerModuleTmp", kind: "template", required: true },
  mlp_module_tmp: { field: "mlpModuleTmp", kind: "template", required: true },
  attn_module_tmp: { field: "attnModuleTmp", kind: "template", required: true },
  ln_f_module: { field: "lnFModule", kind: "module", required: true },
  lm_head_module: { field: "lmHeadModule", kind: "module", required: true },
  mom2_dataset: { field: "mom2Dataset", kind: "string", required: true },
  mom2_n_samples: { field: "mom2NSamples", kind: "posInt", required: true },
  mom2_dtype: {
    field: "mom2Dtype",
    kind: { oneOf: ["float32", "float64", "float16", "bfloat16"] },
    required: true,
  },
  model_parallel: { field: "modelParallel", kind: "bool", required: false },
  fp16: { field: "fp16", kind: "bool", required: false },
  max_length: { field: "maxLength", kind: "posInt", required: false },
  batch_size: { field: "batchSize", kind: "posInt", required: false },
  original_implementation: { field: "originalImplementation", kind: "bool", required: false },
  enable_random_prefix_keys: { field: "enableRandomPrefixKeys", kind: "bool", required: false },
  enable_prompt_keys: { field: "enablePromptKeys", kind: "bool", required: false },
  precision: { field: "precision", kind: { oneOf: ["f32", "f16", "mixed"] }, required: false },
  devices: { field: "devices", kind: "devices", required: false },
  update: { field: "update", kind: { oneOf: ["rome", "r-rome", "p-rome"] }, required: false },
  stats_corpus: { field: "statsCorpus", kind: "string", required: false },
  seed: { field: "seed", kind: "nonNegInt", required: false },
  loss_break: { field: "lossBreak", kind: "nonNegNumber", required: false },
};

/** Every YAML key keg reads (EasyEdit's ROME / R-ROME keys and keg's own), in documentation order. */
export const HPARAM_KEYS: readonly string[] = Object.keys(KEYS);

const R_ROME_FLAGS = ["original_implementation", "enable_random_prefix_keys", "enable_prompt_keys"] as const;

const DEFAULTS: Readonly<Record<string, unknown>> = {
  stats_dir: "./data/stats",
  device: 0,
  model_parallel: false,
  fp16: false,
  max_length: 40,
  batch_size: 1,
  devices: 1,
  seed: 0,
  loss_break: 0.05,
};

// ---------------------------------------------------------------------------------------------------------
// Value conversion

/** A short description of a value for error messages. */
function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `a list ${JSON.stringify(v)}`;
  if (typeof v === "object") return `a mapping ${JSON.stringify(v)}`;
  return String(v);
}

class BadValue extends Error {}

const NUMBER_TEXT = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** A number, also from a numeric string ("5e-1"); anything else is "expected <kind>". */
function toNumber(v: unknown, kind = "a number"): number {
  let n: number | undefined;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && NUMBER_TEXT.test(v.trim())) n = Number(v.trim());
  if (n === undefined || !Number.isFinite(n)) throw new BadValue(`expected ${kind}, got ${describe(v)}`);
  return n;
}

/** An integer ≥ min; `what` describes the accepted range. */
function toInt(v: unknown, what: string, min: number): number {
  const n = toNumber(v, "an integer");
  if (!Number.isInteger(n) || n < min) throw new BadValue(`expected ${what}, got ${describe(v)}`);
  return n;
}

const TRUE_WORDS = new Set(["true", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "no", "off"]);

function toBool(v: unknown): boolean {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const w = v.trim().toLowerCase();
    if (TRUE_WORDS.has(w)) return true;
    if (FALSE_WORDS.has(w)) return false;
  }
  throw new BadValue(`expected true or false, got ${describe(v)}`);
}

function toString(v: unknown): string {
  if (typeof v !== "string") throw new BadValue(`expected a string, got ${describe(v)}`);
  return v;
}

function convert(kind: Kind, v: unknown): unknown {
  if (typeof kind === "object") {
    if (typeof v === "string" && kind.oneOf.includes(v)) return v;
    throw new BadValue(
      `expected one of ${kind.oneOf.map((s) => JSON.stringify(s)).join(", ")}, got ${describe(v)}`,
    );
  }
  switch (kind) {
    case "string":
      return toString(v);
    case "template": {
      const s = toString(v);
      const n = s.split("{}").length - 1;
      if (n !== 1) {
        throw new BadValue(`expected a module name template with one "{}" for the layer, got ${describe(s)}`);
      }
      return s;
    }
    case "module": {
      const s = toString(v);
      if (s.includes("{") || s.length === 0) throw new BadValue(`expected a module name, got ${describe(s)}`);
      return s;
    }
    case "posInt":
      return toInt(v, "a positive integer", 1);
    case "nonNegInt":
      return toInt(v, "a non-negative integer", 0);
    case "posNumber": {
      const n = toNumber(v);
      if (!(n > 0)) throw new BadValue(`expected a positive number, got ${describe(v)}`);
      return n;
    }
    case "nonNegNumber": {
      const n = toNumber(v);
      if (!(n >= 0)) throw new BadValue(`expected a non-negative number, got ${describe(v)}`);
      return n;
    }
    case "bool":
      return toBool(v);
    case "layers": {
      const what = 'a non-empty list of layer indices (or "auto")';
      if (v === "auto") return []; // chosen by causal tracing before editing (layersAuto)
      if (!Array.isArray(v) || v.length === 0) throw new BadValue(`expected ${what}, got ${describe(v)}`);
      const out = v.map((x, i) => {
        try {
          return toInt(x, "a non-negative integer", 0);
        } catch (e) {
          throw new BadValue(`[${i}]: ${(e as Error).message}`);
        }
      });
      const dup = out.find((x, i) => out.indexOf(x) !== i);
      if (dup !== undefined) throw new BadValue(`layer ${dup} is listed twice`);
      return out;
    }
    case "lengthParams": {
      const what = "a list of [length, count] pairs";
      if (!Array.isArray(v)) throw new BadValue(`expected ${what}, got ${describe(v)}`);
      return v.map((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new BadValue(`[${i}]: expected a [length, count] pair, got ${describe(pair)}`);
        }
        try {
          return [toInt(pair[0], "a positive token length", 1), toInt(pair[1], "a non-negative count", 0)];
        } catch (e) {
          throw new BadValue(`[${i}]: ${(e as Error).message}`);
        }
      });
    }
    case "devices":
      return toDevices(v);
  }
}

function toDevices(v: unknown): DevicesSpec {
  const what = "a device count, a per-layer device list or a {layer: device} mapping";
  if (typeof v === "number" || (typeof v === "string" && /^\s*\d+\s*$/.test(v))) {
    return toInt(v, "a positive device count", 1);
  }
  let list: unknown[];
  if (typeof v === "string" && /^[\d\s,]+$/.test(v)) list = v.split(",");
  else if (Array.isArray(v)) list = v;
  else if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>);
    list = new Array(entries.length);
    for (const [k, d] of entries) {
      const layer = /^\d+$/.test(k) ? Number(k) : NaN;
      if (!(layer < entries.length)) {
        throw new BadValue(
          `mapping keys must be the layers 0..${entries.length - 1}, got ${JSON.stringify(k)}`,
        );
      }
      list[layer] = d;
    }
  } else throw new BadValue(`expected ${what}, got ${describe(v)}`);
  if (list.length === 0) throw new BadValue(`expected ${what}, got ${describe(v)}`);
  return list.map((d, i) => {
    try {
      return toInt(typeof d === "string" ? d.trim() : d, "a device index ≥ 0", 0);
    } catch (e) {
      throw new BadValue(`layer ${i}: ${(e as Error).message}`);
    }
  });
}

/** Levenshtein distance (for "did you mean" hints). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function unknownKeyMessage(key: string): string {
  let best = "", bestD = Infinity;
  for (const k of HPARAM_KEYS) {
    const d = editDistance(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  const hint = bestD <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean ${best}?)` : "";
  return `unknown key${hint}`;
}

// ---------------------------------------------------------------------------------------------------------
// Validation

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Which update the R-ROME flags select (all three given), or an error message. */
function updateFromFlags(orig: boolean, randomPrefix: boolean, promptKeys: boolean): UpdateKind | string {
  if (!orig && randomPrefix === promptKeys) {
    return randomPrefix
      ? "enable_prompt_keys and enable_random_prefix_keys are both true; enable exactly one " +
        "(or set original_implementation: true)"
      : "enable_prompt_keys and enable_random_prefix_keys are both false; enable exactly one " +
        "(or set original_implementation: true)";
  }
  if (randomPrefix) return "r-rome";
  if (orig) return "rome";
  return "p-rome";
}

/**
 * Validates a raw mapping. Errors about an `overridden` key are labelled `<source> (override)`.
 */
function build(raw: unknown, source: string, overridden: ReadonlySet<string> = new Set()): RomeHparams {
  const labelOf = (key: string): string => overridden.has(key) ? `${source} (override)` : source;
  if (!isMapping(raw)) {
    throw new HparamsError(source, undefined, `expected a mapping of hyper-parameters, got ${describe(raw)}`);
  }
  for (const key of Object.keys(raw)) {
    if (!(key in KEYS)) throw new HparamsError(labelOf(key), key, unknownKeyMessage(key));
  }
  const missing = HPARAM_KEYS.filter((k) => KEYS[k].required && !(k in raw));
  if (missing.length > 0) {
    throw new HparamsError(
      source,
      missing.join(", "),
      `missing required key${missing.length > 1 ? "s" : ""}`,
    );
  }
  const values: Record<string, unknown> = {};
  for (const key of HPARAM_KEYS) {
    if (!(key in raw)) continue;
    try {
      values[key] = convert(KEYS[key].kind, raw[key]);
    } catch (e) {
      if (!(e instanceof BadValue)) throw e;
      const m = e.message;
      // Element errors start with "[i]: " — keep them attached to the key: `layers[1]: …`.
      const sub = /^\[(\d+)\]: /.exec(m);
      if (sub) throw new HparamsError(labelOf(key), `${key}[${sub[1]}]`, m.slice(sub[0].length));
      throw new HparamsError(labelOf(key), key, m);
    }
  }
  const get = <T>(key: string): T => (key in values ? values[key] : DEFAULTS[key]) as T;

  const algName = get<AlgName>("alg_name");
  const flagsGiven = R_ROME_FLAGS.filter((k) => k in values);
  if (algName === "ROME" && flagsGiven.length > 0) {
    throw new HparamsError(
      labelOf(flagsGiven[0]),
      flagsGiven[0],
      'only valid with alg_name "R-ROME" (or choose the variant with keg\'s update: rome|r-rome|p-rome)',
    );
  }
  // With overrides, the later source wins: an overridden `update` beats flags from the file and vice versa.
  const updateGiven = "update" in values;
  const flagsOverridden = flagsGiven.some((k) => overridden.has(k));
  const useFlags = algName === "R-ROME" &&
    !(updateGiven && overridden.has("update") && !flagsOverridden);
  let fromFlags: UpdateKind | undefined;
  if (useFlags) {
    const r = updateFromFlags(
      (values.original_implementation as boolean | undefined) ?? false,
      (values.enable_random_prefix_keys as boolean | undefined) ?? true,
      (values.enable_prompt_keys as boolean | undefined) ?? false,
    );
    if (r !== "rome" && r !== "r-rome" && r !== "p-rome") {
      const k = flagsGiven.includes("enable_prompt_keys") ? "enable_prompt_keys" : flagsGiven[0];
      throw new HparamsError(labelOf(k), k, r);
    }
    fromFlags = r;
  }
  let update: UpdateKind;
  if (updateGiven && flagsOverridden && !overridden.has("update")) update = fromFlags as UpdateKind;
  else if (updateGiven) {
    update = values.update as UpdateKind;
    if (fromFlags !== undefined && flagsGiven.length > 0 && fromFlags !== update) {
      throw new HparamsError(
        labelOf("update"),
        "update",
        `${JSON.stringify(update)} contradicts the R-ROME flags ${flagsGiven.join(", ")} (they select ${
          JSON.stringify(fromFlags)
        })`,
      );
    }
  } else update = fromFlags ?? "rome";

  const factToken = get<FactToken>("fact_token");
  if (update === "p-rome" && factToken === "last") {
    throw new HparamsError(
      labelOf("fact_token"),
      "fact_token",
      'the "p-rome" update (prompt keys) needs a subject token (subject_last, …), not "last"',
    );
  }
  const batchSize = get<number>("batch_size");
  if (batchSize !== 1) {
    throw new HparamsError(
      labelOf("batch_size"),
      "batch_size",
      `ROME edits one request at a time: expected 1, got ${batchSize}`,
    );
  }
  const fp16 = get<boolean>("fp16");
  const precision: Precision = "precision" in values ? values.precision as Precision : fp16 ? "f16" : "f32";

  return {
    algName,
    modelName: values.model_name as string | undefined,
    statsDir: get("stats_dir"),
    device: get("device"),
    layers: get("layers"),
    layersAuto: raw.layers === "auto",
    factToken,
    vNumGradSteps: get("v_num_grad_steps"),
    vLr: get("v_lr"),
    vLossLayer: get("v_loss_layer"),
    vWeightDecay: get("v_weight_decay"),
    clampNormFactor: get("clamp_norm_factor"),
    klFactor: get("kl_factor"),
    mom2Adjustment: get("mom2_adjustment"),
    contextTemplateLengthParams: get("context_template_length_params"),
    rewriteModuleTmp: get("rewrite_module_tmp"),
    layerModuleTmp: get("layer_module_tmp"),
    mlpModuleTmp: get("mlp_module_tmp"),
    attnModuleTmp: get("attn_module_tmp"),
    lnFModule: get("ln_f_module"),
    lmHeadModule: get("lm_head_module"),
    mom2Dataset: get("mom2_dataset"),
    mom2NSamples: get("mom2_n_samples"),
    mom2Dtype: get("mom2_dtype"),
    modelParallel: get("model_parallel"),
    fp16,
    maxLength: get("max_length"),
    batchSize,
    ...flagsForUpdate(update),
    precision,
    devices: get("devices"),
    update,
    statsCorpus: values.stats_corpus as string | undefined,
    seed: get("seed"),
    lossBreak: get("loss_break"),
    source,
    raw: Object.freeze({ ...raw }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Public entry points

/**
 * Parses hyper-parameters from YAML (or JSON) text. `source` names the file in errors.
 *
 * @example
 * ```ts
 * const hp = parseHparams("alg_name: ROME\n…", "configs/ROME/gpt2-xl.yaml");
 * hp.vLr; // 0.5
 * ```
 */
export function parseHparams(text: string, source: string): RomeHparams {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const err = e as Error & { linePos?: { line: number; col: number }[] };
    const pos = err.linePos?.[0];
    const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
    throw new HparamsError(
      where,
      undefined,
      `invalid YAML: ${err.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}`,
    );
  }
  return build(raw, source);
}

/**
 * Reads a hyper-parameter file. As EasyEdit does, a path without a `.yaml`/`.yml`/`.json` ending that does
 * not exist is retried with `.yaml` appended (`configs/ROME/gpt2-xl` → `configs/ROME/gpt2-xl.yaml`).
 */
export async function loadHparams(path: string): Promise<RomeHparams> {
  let file = path;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || /\.(ya?ml|json)$/i.test(path)) {
      throw new HparamsError(path, undefined, `cannot read: ${(e as Error).message}`);
    }
    file = `${path}.yaml`;
    try {
      text = await Deno.readTextFile(file);
    } catch (e2) {
      throw new HparamsError(path, undefined, `cannot read (also tried ${file}): ${(e2 as Error).message}`);
    }
  }
  return parseHparams(text, file);
}

/**
 * Returns new hyper-parameters with some keys replaced (e.g. from CLI `--set v_lr=0.1`). Keys are YAML
 * names (`v_lr`) or field names (`vLr`). A string value for a non-string key is read as YAML (`"[3]"` → [3],
 * `"true"` → true, `"5e-1"` → 0.5); `null` or `undefined` removes the key (back to its default). Derived
 * values (`update`, `precision`, the R-ROME flags) are recomputed from the merged mapping, and errors name
 * the key with the source labelled `<source> (override)`. Between `update` and the R-ROME flags the
 * overridden side wins (`--set update=p-rome` on a file that sets `enable_random_prefix_keys: true`).
 */
export function applyOverrides(hp: RomeHparams, overrides: Record<string, unknown>): RomeHparams {
  const byField = new Map<string, string>(HPARAM_KEYS.map((k) => [KEYS[k].field, k]));
  const merged: Record<string, unknown> = { ...hp.raw };
  const overridden = new Set<string>();
  const label = `${hp.source} (override)`;
  for (const [name, value] of Object.entries(overrides)) {
    const key = name in KEYS ? name : byField.get(name) ?? name;
    if (!(key in KEYS)) throw new HparamsError(label, name, unknownKeyMessage(name));
    overridden.add(key);
    if (value === null || value === undefined) {
      delete merged[key];
      continue;
    }
    const kind = KEYS[key].kind;
    const stringKind = kind === "string" || kind === "template" || kind === "module" ||
      typeof kind === "object";
    if (typeof value === "string" && !stringKind) {
      try {
        merged[key] = parseYaml(value);
      } catch {
        merged[key] = value; // reported as a type error by build()
      }
    } else merged[key] = value;
  }
  return build(merged, hp.source, overridden);
}
