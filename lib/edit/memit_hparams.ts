/**
 * MEMIT / AlphaEdit hyper-parameters: EasyEdit's `MEMITHyperParams` / `AlphaEditHyperParams` YAML files read
 * unchanged. The keys shared with ROME (v_*, clamp_norm_factor, kl_factor, mom2_*, module templates, keg's
 * precision / devices / stats_corpus / seed / loss_break) are validated by {@link parseHparams}; the keys of
 * this module are:
 *
 * | key | meaning | default |
 * |---|---|---|
 * | `alg_name` | `MEMIT` or `AlphaEdit` | required |
 * | `mom2_update_weight` | λ in ΔW = R Kᵀ(λC + KKᵀ)⁻¹ (MEMIT; recorded for AlphaEdit) | required for MEMIT |
 * | `layer_selection` | `all` (EasyEdit's only implemented value) | `all` |
 * | `nullspace_threshold` | AlphaEdit: eigenvalues of C below it span the null space | required for AlphaEdit |
 * | `L2` | AlphaEdit: the ridge term L2·I | required for AlphaEdit |
 * | `P_loc` | AlphaEdit: where the reference caches P (keg computes P on the GPU and ignores it) | none |
 * | `batch_size` | requests per batch (EasyEdit's batch_edit) | 1 |
 * | `context_template_length_params` | as ROME; MEMIT's reference hard-codes `[[10, 5]]` | `[[10, 5]]` |
 *
 * `update` (ROME's variant) is not accepted. Errors name the file and the key.
 * @module
 */
import { parse as parseYaml } from "npm:yaml@2.9.1";
import { HparamsError, parseHparams, type RomeHparams } from "./hparams.ts";

/** Batch-editing algorithm. */
export type BatchAlgName = "MEMIT" | "AlphaEdit";

/** MEMIT / AlphaEdit hyper-parameters: the ROME-shared part plus the batch keys. */
export interface MemitHparams {
  /** `alg_name`. */
  algName: BatchAlgName;
  /** The shared keys (v*, covariance, modules, precision …); `base.layers` = {@linkcode layers}. */
  base: RomeHparams;
  /** `layers`: the edited layers, strictly increasing; z lives at the last one. */
  layers: number[];
  /** `mom2_update_weight`: λ. */
  mom2UpdateWeight: number;
  /** `layer_selection`. */
  layerSelection: "all";
  /** `nullspace_threshold` (AlphaEdit). */
  nullspaceThreshold: number;
  /** `L2` (AlphaEdit). */
  l2: number;
  /** `P_loc` (AlphaEdit; recorded only). */
  pLoc: string | undefined;
  /** `batch_size`. */
  batchSize: number;
  /** Where the values came from. */
  source: string;
}

const OWN = ["mom2_update_weight", "layer_selection", "nullspace_threshold", "L2", "P_loc", "batch_size"];

function positive(source: string, key: string, v: unknown, allowZero = false): number {
  const n = typeof v === "string" ? Number(v.trim()) : v;
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    throw new HparamsError(
      source,
      key,
      `expected a number ${allowZero ? "≥ 0" : "> 0"}, got ${JSON.stringify(v)}` +
        (key === "mom2_update_weight" ? " (λ ≤ 0 makes λC + KKᵀ singular for fewer keys than d_ff)" : "") +
        (key === "L2" ? " (L2 = 0 makes the null-space system singular)" : ""),
    );
  }
  return n;
}

/** Validates a parsed mapping (YAML or overrides already merged). */
export function buildMemitHparams(raw: unknown, source: string): MemitHparams {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new HparamsError(source, undefined, "expected a mapping of hyper-parameters");
  }
  const m = raw as Record<string, unknown>;
  const alg = m.alg_name;
  if (alg !== "MEMIT" && alg !== "AlphaEdit") {
    throw new HparamsError(source, "alg_name", `expected "MEMIT" or "AlphaEdit", got ${JSON.stringify(alg)}`);
  }
  if ("update" in m) {
    throw new HparamsError(source, "update", `ROME's update variant is not a ${alg} key`);
  }
  const rest: Record<string, unknown> = { ...m, alg_name: "ROME" };
  for (const k of OWN) delete rest[k];
  if (!("context_template_length_params" in rest)) rest.context_template_length_params = [[10, 5]];
  const base = parseHparams(JSON.stringify(rest), source);
  const layers = base.layers;
  for (let i = 1; i < layers.length; i++) {
    if (layers[i] <= layers[i - 1]) {
      throw new HparamsError(source, "layers", `must be strictly increasing, got [${layers}]`);
    }
  }
  const sel = m.layer_selection ?? "all";
  if (sel !== "all") {
    throw new HparamsError(
      source,
      "layer_selection",
      `only "all" is implemented, got ${JSON.stringify(sel)}`,
    );
  }
  const need = (k: string) => {
    if (!(k in m)) throw new HparamsError(source, k, `missing required key for ${alg}`);
    return m[k];
  };
  const mom2UpdateWeight = alg === "MEMIT"
    ? positive(source, "mom2_update_weight", need("mom2_update_weight"))
    : "mom2_update_weight" in m
    ? positive(source, "mom2_update_weight", m.mom2_update_weight)
    : 0;
  const nullspaceThreshold = alg === "AlphaEdit"
    ? positive(source, "nullspace_threshold", need("nullspace_threshold"))
    : 0;
  const l2 = alg === "AlphaEdit" ? positive(source, "L2", need("L2")) : 0;
  const bs = m.batch_size ?? 1;
  if (typeof bs !== "number" || !Number.isInteger(bs) || bs < 1) {
    throw new HparamsError(source, "batch_size", `expected an integer ≥ 1, got ${JSON.stringify(bs)}`);
  }
  const pLoc = m.P_loc;
  if (pLoc !== undefined && typeof pLoc !== "string") {
    throw new HparamsError(source, "P_loc", `expected a string, got ${JSON.stringify(pLoc)}`);
  }
  return {
    algName: alg,
    base,
    layers,
    mom2UpdateWeight,
    layerSelection: "all",
    nullspaceThreshold,
    l2,
    pLoc,
    batchSize: bs,
    source,
  };
}

/** Parses MEMIT / AlphaEdit YAML text; `source` names the file in errors. */
export function parseMemitHparams(text: string, source: string): MemitHparams {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new HparamsError(source, undefined, `invalid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  return buildMemitHparams(raw, source);
}

/** Reads a MEMIT / AlphaEdit hyper-parameter file. */
export async function loadMemitHparams(path: string): Promise<MemitHparams> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new HparamsError(path, undefined, `cannot read: ${(e as Error).message}`);
  }
  return parseMemitHparams(text, path);
}

/** The `alg_name` of a YAML file, without validating the rest (to choose the parser). */
export async function peekAlgName(path: string): Promise<string | undefined> {
  try {
    const raw = parseYaml(await Deno.readTextFile(path));
    const a = (raw as Record<string, unknown> | null)?.alg_name;
    return typeof a === "string" ? a : undefined;
  } catch {
    return undefined;
  }
}

/** Returns new hyper-parameters with YAML keys replaced (`--set key=value`; string values read as YAML). */
export function applyMemitOverrides(hp: MemitHparams, overrides: Record<string, unknown>): MemitHparams {
  const merged: Record<string, unknown> = { ...hp.base.raw, alg_name: hp.algName };
  delete merged.update;
  // the batch keys of the original mapping are not in base.raw: put them back
  merged.mom2_update_weight = hp.mom2UpdateWeight || undefined;
  if (hp.algName === "AlphaEdit") merged.nullspace_threshold = hp.nullspaceThreshold, merged.L2 = hp.l2;
  merged.batch_size = hp.batchSize;
  if (hp.pLoc !== undefined) merged.P_loc = hp.pLoc;
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  for (const [k, v] of Object.entries(overrides)) {
    if (v === null || v === undefined) delete merged[k];
    else if (typeof v === "string" && !["alg_name", "P_loc", "layer_selection"].includes(k)) {
      try {
        merged[k] = parseYaml(v);
      } catch {
        merged[k] = v;
      }
    } else merged[k] = v;
  }
  return buildMemitHparams(merged, `${hp.source} (override)`);
}
