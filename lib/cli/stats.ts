/**
 * `keg stats`: compute (or find cached) covariance statistics of the edit layer's keys; `--shard i/n`
 * accumulates one slice of the corpus, and `keg stats merge` adds the slices into the cached C.
 * @module
 */
import { loadModel } from "../model/load.ts";
import { applyOverrides, loadHparams } from "../edit/hparams.ts";
import { parseFlags, required, UsageError } from "./args.ts";
import { statsFor } from "./edit.ts";
import { profiled } from "./profile.ts";
import { exportStatsNpz } from "../edit/covariance.ts";
import { collectStatsShard, mergeStatsShards } from "../edit/stats_shards.ts";
import { parseShardFlag } from "./shard.ts";
import { Progress } from "./progress.ts";
import { openSafetensors } from "../model/safetensors.ts";
import { checkWritable } from "../util/fs.ts";

/** Usage text. */
export const STATS_USAGE: string =
  `keg stats --hparams <yaml> --model <dir|hub id> [--corpus FILES] [--layer L] [--samples N] [--export-npz F] [--profile]
  Computes C = E[k kᵀ] of the edit layer's keys over the corpus (cached; Ctrl-C saves progress and a rerun resumes).
  --shard i/n | auto  accumulate only slice i of n of the corpus (auto: SLURM_ARRAY_TASK_ID/COUNT, or
                      auto/N with Kubernetes' JOB_COMPLETION_INDEX) into a shard file
  --shard-dir DIR     where shard files go (default: $KEG_CACHE/stats/shards)

keg stats merge SHARD…   add the shard files (or the shard files in the given folders) of one statistics
                         run into the cached C a single run writes (then every edit finds it)`;

/** Runs the command (or `merge`). */
export async function statsCommand(args: string[]): Promise<void> {
  if (args[0] === "merge") return await statsMergeCommand(args.slice(1));
  const v = parseFlags("stats", args, {
    hparams: { type: "string" },
    model: { type: "string" },
    corpus: { type: "string" },
    layer: { type: "string" },
    samples: { type: "string" },
    precision: { type: "string" },
    "export-npz": { type: "string" },
    shard: { type: "string" },
    "shard-dir": { type: "string" },
    profile: { type: "boolean" },
  });
  const shard = typeof v.shard === "string" ? parseShardFlag("stats", v.shard) : null;
  if (shard && v["export-npz"]) {
    throw new UsageError("stats: --export-npz needs the whole C; export after `keg stats merge`");
  }
  let hp = await loadHparams(required("stats", v, "hparams"));
  const o: Record<string, unknown> = { mom2_adjustment: true };
  if (v.layer !== undefined) o.layers = [Number(v.layer)];
  if (v.samples !== undefined) o.mom2_n_samples = v.samples;
  if (v.precision !== undefined) o.precision = v.precision;
  hp = applyOverrides(hp, o);
  const modelName = (v.model as string | undefined) ?? hp.modelName;
  if (!modelName) throw new UsageError("stats: --model is required (or model_name in the hparams)");
  const corpus = ((v.corpus as string | undefined) ?? hp.statsCorpus)?.split(",").filter(Boolean);
  if (shard && !corpus?.length) {
    throw new UsageError(`${hp.source}: stats --shard needs a corpus: give --corpus or stats_corpus`);
  }
  if (v["export-npz"]) await checkWritable(String(v["export-npz"]), "--export-npz", "file");
  const model = await loadModel(modelName, { precision: hp.precision, devices: hp.devices });
  try {
    if (shard) {
      const layer = hp.layers[0];
      const progress = new Progress(`stats layer ${layer} shard ${shard.index}/${shard.count}`, 0, 0, {
        unit: "seq",
      });
      const r = await collectStatsShard(
        model,
        {
          layer,
          corpus: corpus!,
          nSamples: hp.mom2NSamples,
          onProgress: (done, total, tokens) => {
            progress.total = total;
            progress.tick(done - progress.done, `${tokens} tokens`);
          },
        },
        shard,
        v["shard-dir"] as string | undefined,
      );
      progress.finish();
      console.log(
        `layer ${layer} shard ${shard.index}/${shard.count}: sequences ${r.range[0]}–${
          r.range[1]
        }, ${r.count} keys → ${r.path}`,
      );
      return;
    }
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

const SHARD_FILE = /\.shard-\d+-of-\d+\.safetensors$/;

/** The shard files named by the arguments: files as given, folders expanded to the shard files in them. */
async function shardFiles(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(a);
    } catch {
      throw new Error(`stats merge: ${a}: no such file or folder`);
    }
    if (!info.isDirectory) {
      out.push(a);
      continue;
    }
    const found: string[] = [];
    for await (const e of Deno.readDir(a)) {
      if (e.isFile && SHARD_FILE.test(e.name)) found.push(`${a}/${e.name}`);
    }
    if (!found.length) throw new Error(`stats merge: ${a} holds no shard files (*.shard-i-of-n.safetensors)`);
    const keys = new Set<string>();
    for (const f of found) {
      const st = await openSafetensors(f);
      keys.add(`${st.metadata?.key}`);
      await st.close();
    }
    if (keys.size > 1) {
      throw new Error(
        `stats merge: ${a} holds shards of ${keys.size} statistics runs (keys ${[...keys].join(", ")}); ` +
          `give one run's shard files`,
      );
    }
    out.push(...found.sort());
  }
  return out;
}

async function statsMergeCommand(args: string[]): Promise<void> {
  if (!args.length || args.some((a) => a.startsWith("--"))) {
    throw new UsageError("stats merge: give the shard files or folders (and no flags)");
  }
  const r = await mergeStatsShards(await shardFiles(args));
  console.log(`layer ${r.layer}: merged ${args.length} argument(s), ${r.count} keys → ${r.path}`);
}
