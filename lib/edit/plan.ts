/**
 * `keg plan`: the GPU memory an edit needs, per device, without loading any weight. The model is placed on
 * virtual devices (lib/gpu/virtual.ts, lib/model/virtual_model.ts) and one edit runs there exactly as
 * `keg edit` runs it — the pre-edit probe, context templates, k*, the v* optimisation (taped forward and
 * backward of the layers above the edit layer), C and its Cholesky factor, the update and the post-edit
 * probe — so every allocation takes the same path through the same buffer pool and the peak is the one
 * `keg edit` would report (`gpuN: … peak`).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { openVirtual, type VirtualGpuOptions } from "../gpu/virtual.ts";
import { evenPlacement } from "../model/placement.ts";
import type { Precision } from "../model/precision.ts";
import { scoreTargets, topNext } from "../model/score.ts";
import { virtualModel } from "../model/virtual_model.ts";
import { applyOverrides, type RomeHparams } from "./hparams.ts";
import { type EditRequest, promptText, targetText } from "./request.ts";
import { RomeEditor } from "./rome.ts";
import { contextTemplates } from "./templates.ts";
import { CONTEXT_TEMPLATE_SEEDS as TEMPLATE_SEEDS } from "./request.ts";
import type { Tokenizer } from "../model/tokenizer.ts";

/** Options of {@link planEdit}. */
export interface PlanOptions {
  /** Precision (default: the hparams'). */
  precision?: Precision;
  /** Devices: a count or a layer → device map (default: the hparams'). */
  devices?: number | string | number[];
  /** What the virtual devices pretend to be (default: a discrete GPU with f16). */
  device?: VirtualGpuOptions;
  /** The request (default: "{} is located in" / "Angola" / "Antarctica"). */
  request?: EditRequest;
  /** Run the pre/post probes `keg edit` prints (default true). */
  probes?: boolean;
  /** Virtual devices to use instead of opening new ones (tests mimic a real device with them). */
  gpus?: Gpu[];
}

/** One device's planned memory in bytes. */
export interface DevicePlan {
  label: string;
  /** Layers placed on it. */
  layers: number[];
  /** Weights. */
  weights: number;
  /** The covariance C and its Cholesky factor (on the edit layer's device; 0 elsewhere). */
  statistics: number;
  /** Peak of all storage buffers (what `keg edit` reports as peak). */
  peak: number;
}

/** The result of {@link planEdit}. */
export interface EditPlan {
  model: string;
  modelType: string;
  precision: Precision;
  layer: number;
  mom2Adjustment: boolean;
  devices: DevicePlan[];
}

/**
 * Context templates of the lengths `contextTemplates` samples (`[[length, count], …]`: each seed word then
 * filler tokens up to `length` tokens, then ". {}"). A virtual device has no logits to sample from; these
 * have the sampled templates' token counts, which is what their memory depends on.
 */
export function plannedTemplates(tok: Tokenizer, lengthParams: [number, number][]): string[] {
  const out = ["{}"];
  const filler = tok.encode(" the", { addBos: false })[0];
  for (const [length, count] of lengthParams) {
    const perSeed = Math.max(1, Math.floor(count / TEMPLATE_SEEDS.length));
    for (const w of TEMPLATE_SEEDS) {
      for (let n = 0; n < perSeed; n++) {
        const ids = tok.encode(w, { addBos: false });
        while (ids.length < length - (tok.addsBos ? 1 : 0)) ids.push(filler);
        out.push(`${tok.decode(ids).replace(/[{}]/g, " ")}. {}`);
      }
    }
  }
  return out;
}

const DEFAULT_REQUEST: EditRequest = {
  prompt: "{} is located in",
  subject: "Angola",
  targetNew: "Antarctica",
};

/** Plans one edit of `model` (a directory, hub id or config.json) with `hp`: see the module documentation. */
export async function planEdit(model: string, hp: RomeHparams, opts: PlanOptions = {}): Promise<EditPlan> {
  const precision = opts.precision ?? hp.precision;
  if (opts.precision && opts.precision !== hp.precision) hp = applyOverrides(hp, { precision });
  // Virtual devices compute nothing: the v* loss reads 0. loss_break 0 keeps the loop going as a real edit
  // does past its first two steps (step 1 is captured and holds its workspace; later steps replay it).
  hp = applyOverrides(hp, { loss_break: 0 });
  const devSpec = opts.devices ?? hp.devices;
  const count = typeof devSpec === "number"
    ? devSpec
    : Array.isArray(devSpec)
    ? Math.max(...devSpec) + 1
    : /^\d+$/.test(String(devSpec))
    ? Number(devSpec)
    : Math.max(...String(devSpec).split(",").map(Number)) + 1;
  const gpus = opts.gpus ?? openVirtual(count, opts.device);
  const m = await virtualModel(model, { precision, devices: devSpec, gpus });
  const net = m.net;
  const L = hp.layers[0];
  let stats = null;
  if (hp.mom2Adjustment) {
    const d = m.config.intermediateSize;
    // what loadStatsFile uploads (a computed C is the same tensor); the values do not matter here
    stats = {
      c: Tensor.empty(net.deviceOf(L), [d, d], "f32", { name: "mom2" }),
      count: 1,
      source: "file" as const,
      path: "(planned)",
    };
  }
  const req = opts.request ?? DEFAULT_REQUEST;
  const probe = async () => {
    if (opts.probes === false) return;
    const tok = m.tokenizer!;
    const text = promptText(req);
    await scoreTargets(net, tok, [text], [tok.encode(targetText(req.targetNew), { addBos: false })]);
    await topNext(net, tok, [text], 5);
  };
  await probe();
  // the sampling passes run as in a real first edit (their text is meaningless here), then templates of
  // the sampled ones' lengths
  await contextTemplates(net, m.tokenizer!, { lengthParams: hp.contextTemplateLengthParams, seed: hp.seed });
  const templates = plannedTemplates(m.tokenizer!, hp.contextTemplateLengthParams);
  const editor = new RomeEditor(m, hp, { stats, templates });
  const e = await editor.edit(req);
  await probe();
  const weights = net.weightBytes();
  const dStats = m.config.intermediateSize ** 2 * 4 * (hp.mom2Adjustment ? 2 : 0);
  const devices = net.devices.map((g, i) => ({
    label: g.label,
    layers: net.layerDevice.flatMap((dv, l) => dv === i ? [l] : []),
    weights: weights[i],
    statistics: net.deviceOf(e.applied.layer) === g ? dStats : 0,
    peak: g.memory().peakBytes,
  }));
  editor.dispose();
  stats?.c.dispose();
  return {
    model,
    modelType: m.config.modelType,
    precision,
    layer: e.applied.layer,
    mom2Adjustment: hp.mom2Adjustment,
    devices,
  };
}

/** A proposed split of the layers over devices that fit a per-device budget. */
export interface SplitProposal {
  /** Devices needed. */
  count: number;
  /** Layer → device map. */
  map: number[];
  plan: EditPlan;
}

/**
 * The fewest devices (up to `maxDevices`, default 8) on which every device's planned peak fits `budget`
 * bytes, with contiguous balanced layer groups; null when even `maxDevices` do not suffice.
 */
export async function proposeSplit(
  model: string,
  hp: RomeHparams,
  budget: number,
  opts: Omit<PlanOptions, "devices" | "gpus"> & { maxDevices?: number; numLayers: number } = { numLayers: 1 },
): Promise<SplitProposal | null> {
  const max = Math.min(opts.maxDevices ?? 8, opts.numLayers);
  for (let n = 1; n <= max; n++) {
    const map = evenPlacement(opts.numLayers, n);
    const plan = await planEdit(model, hp, { ...opts, devices: map });
    if (plan.devices.every((d) => d.peak <= budget)) return { count: n, map, plan };
  }
  return null;
}
