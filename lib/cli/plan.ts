/**
 * `keg plan`: the GPU memory one edit needs per device, from config.json alone (see lib/edit/plan.ts).
 * @module
 */
import { loadHparams } from "../edit/hparams.ts";
import { type EditPlan, planEdit, proposeSplit } from "../edit/plan.ts";
import { parsePrecision } from "../model/precision.ts";
import { loadConfig, parseConfig } from "../model/config.ts";
import { resolveModelDir } from "../model/checkpoint.ts";
import type { VirtualGpuOptions } from "../gpu/virtual.ts";
import { parseFlags, required, UsageError } from "./args.ts";
import { formatBytes } from "./report.ts";

/** Usage text. */
export const PLAN_USAGE: string =
  `keg plan --model <dir | hub id | config.json> --hparams <yaml> [options]   GPU memory of one edit, per device
  --precision P       f32 | f16 | mixed (default: the hparams' precision)
  --devices N|MAP     devices (default: the hparams'); auto: the fewest devices that fit --budget
  --budget SIZE       per-device memory, e.g. 16GB, 24GiB (with --devices auto; else flags devices over it)
  --adapter A         gpu (default: a discrete GPU's kernels and 2 GiB bindings) | lavapipe (CPU kernels, 128 MiB)
  --json FILE         write the plan as JSON
Nothing is loaded: the edit runs on virtual devices that allocate and dispatch nothing.`;

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parses a memory size such as "16GB", "24 GiB" or "1.5e9". */
export function parseSize(text: string, where = "--budget"): number {
  const m = /^\s*([\d.]+(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? (m[2] || "b").toLowerCase() : "";
  if (!m || !(unit in UNITS) || !(Number(m[1]) > 0)) {
    throw new UsageError(`${where}: expected a size such as 16GB or 24GiB, got ${JSON.stringify(text)}`);
  }
  return Number(m[1]) * UNITS[unit];
}

function describe(plan: EditPlan, budget: number | null): string {
  const lines = [
    `plan: ${plan.model} (${plan.modelType}), ${plan.precision}, edit layer ${plan.layer}, C ${
      plan.mom2Adjustment ? "from statistics" : "= I"
    }`,
  ];
  for (const d of plan.devices) {
    const range = d.layers.length ? `${d.layers[0]}–${d.layers[d.layers.length - 1]}` : "none";
    lines.push(
      `${d.label}: layers ${range}, weights ${formatBytes(d.weights)}, C + factor ${
        formatBytes(d.statistics)
      }, peak ${formatBytes(d.peak)}${budget !== null && d.peak > budget ? "  (over the budget)" : ""}`,
    );
  }
  return lines.join("\n");
}

/** Runs the command. */
export async function planCommand(args: string[]): Promise<void> {
  const v = parseFlags("plan", args, {
    model: { type: "string" },
    hparams: { type: "string" },
    precision: { type: "string" },
    devices: { type: "string" },
    budget: { type: "string" },
    adapter: { type: "string" },
    json: { type: "string" },
  });
  const hp = await loadHparams(required("plan", v, "hparams"));
  const model = (v.model as string | undefined) ?? hp.modelName;
  if (!model) throw new UsageError("plan: --model is required (or model_name in the hparams)");
  const precision = v.precision ? parsePrecision(String(v.precision), "--precision") : undefined;
  const budget = v.budget ? parseSize(String(v.budget)) : null;
  const adapter = (v.adapter as string | undefined) ?? "gpu";
  let device: VirtualGpuOptions;
  if (adapter === "gpu") device = {};
  else if (adapter === "lavapipe") {
    device = {
      description: "llvmpipe (virtual)",
      limits: { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 28 },
    };
  } else throw new UsageError(`plan: --adapter expects gpu or lavapipe, got ${JSON.stringify(adapter)}`);
  let plan: EditPlan;
  if (v.devices === "auto") {
    if (budget === null) throw new UsageError("plan: --devices auto needs --budget");
    const cfg = model.endsWith(".json")
      ? parseConfig(JSON.parse(await Deno.readTextFile(model)), model)
      : await loadConfig(await resolveModelDir(model));
    const split = await proposeSplit(model, hp, budget, { precision, device, numLayers: cfg.numLayers });
    if (!split) {
      throw new Error(`no split over up to 8 devices fits ${formatBytes(budget)} per device`);
    }
    plan = split.plan;
    console.log(describe(plan, budget));
    console.log(
      `proposal: --devices ${split.count === 1 ? "1" : split.map.join(",")} (${split.count} device(s))`,
    );
  } else {
    plan = await planEdit(model, hp, { precision, devices: v.devices as string | undefined, device });
    console.log(describe(plan, budget));
  }
  if (v.json) await Deno.writeTextFile(String(v.json), JSON.stringify(plan, null, 2));
}
