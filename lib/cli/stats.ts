/**
 * `keg stats`: compute (or find cached) covariance statistics of the edit layer's keys.
 * @module
 */
import { loadModel } from "../model/load.ts";
import { applyOverrides, loadHparams } from "../edit/hparams.ts";
import { parseFlags, required, UsageError } from "./args.ts";
import { statsFor } from "./edit.ts";
import { profiled } from "./profile.ts";
import { exportStatsNpz } from "../edit/covariance.ts";
import { checkWritable } from "../util/fs.ts";

/** Usage text. */
export const STATS_USAGE: string =
  `keg stats --hparams <yaml> --model <dir|hub id> [--corpus FILES] [--layer L] [--samples N] [--export-npz F] [--profile]
  Computes C = E[k kᵀ] of the edit layer's keys over the corpus (cached; Ctrl-C saves progress and a rerun resumes).`;

/** Runs the command. */
export async function statsCommand(args: string[]): Promise<void> {
  const v = parseFlags("stats", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    corpus: { type: "string" },
    layer: { type: "string" },
    samples: { type: "string" },
    precision: { type: "string" },
    "export-npz": { type: "string" },
    profile: { type: "boolean" },
  });
  let hp = await loadHparams(required("stats", v, "hparams"));
  const o: Record<string, unknown> = { mom2_adjustment: true };
  if (v.layer !== undefined) o.layers = [Number(v.layer)];
  if (v.samples !== undefined) o.mom2_n_samples = v.samples;
  if (v.precision !== undefined) o.precision = v.precision;
  hp = applyOverrides(hp, o);
  const modelName = (v.model as string | undefined) ?? hp.modelName;
  if (!modelName) throw new UsageError("stats: --model is required (or model_name in the hparams)");
  if (v["export-npz"]) await checkWritable(String(v["export-npz"]), "--export-npz", "file");
  const model = await loadModel(modelName, { precision: hp.precision, devices: hp.devices });
  try {
    const { value: s } = await profiled(
      v.profile === true,
      model.net.devices,
      () => statsFor(model, hp, { corpus: v.corpus as string | undefined }),
    );
    console.log(`layer ${hp.layers[0]}: ${s!.count} keys → ${s!.path}`);
    if (v["export-npz"]) {
      await exportStatsNpz(s!, String(v["export-npz"]));
      console.log(`exported as the reference code's npz: ${v["export-npz"]}`);
    }
  } finally {
    await model.dispose();
  }
}
