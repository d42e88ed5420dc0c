/**
 * `keg generate`: greedy completion of a prompt on WebGPU.
 * @module
 */
import { loadModel } from "../model/load.ts";
import { readEdits } from "../edit/edits_io.ts";
import { applyEdits } from "../edit/applied.ts";
import { greedyGenerate } from "../model/generate.ts";
import { parsePrecision } from "../model/precision.ts";
import { intFlag, parseFlags, required, UsageError } from "./args.ts";
import { adapterReport, memoryReport } from "./report.ts";

/** Usage text. */
export const GENERATE_USAGE: string = `keg generate --model <dir|hub id> --prompt "text" [options]
  --max-new N         tokens to generate (default 20)
  --precision P       f32 | f16 | mixed (default f32)
  --devices N|MAP     number of devices, or a layer→device map like 0,0,0,1,1,1 (default 1)
  --no-kv-cache       recompute the whole sequence each step instead of decoding with a KV cache
  --edits DIR         apply edits saved by "keg edit --save DIR" first`;

/** Runs the command. */
export async function generateCommand(args: string[]): Promise<void> {
  const v = parseFlags("generate", args, {
    model: { type: "string" },
    prompt: { type: "string" },
    "max-new": { type: "string" },
    precision: { type: "string" },
    devices: { type: "string" },
    "no-kv-cache": { type: "boolean" },
    edits: { type: "string" },
  });
  const modelName = required("generate", v, "model");
  const prompt = required("generate", v, "prompt");
  const maxNew = intFlag("generate", v, "max-new", 20);
  const precision = parsePrecision(String(v.precision ?? "f32"), "--precision");
  const t0 = performance.now();
  const model = await loadModel(modelName, { precision, devices: (v.devices as string) ?? 1 });
  try {
    const tok = model.tokenizer;
    if (!tok) {
      throw new UsageError(
        `generate: ${model.dir} has no tokenizer (tokenizer.json or vocab.json + merges.txt)`,
      );
    }
    console.error(adapterReport(model.net.devices));
    if (v.edits) {
      const edits = await readEdits(String(v.edits), model);
      await applyEdits(model, edits, String(v.edits));
      console.error(`applied ${edits.length} saved edit(s) from ${v.edits}`);
    }
    const loadS = (performance.now() - t0) / 1000;
    const ids = tok.encode(prompt);
    const t1 = performance.now();
    const out = await greedyGenerate(model.net, ids, {
      maxNewTokens: maxNew,
      eosId: tok.eosId,
      maxPositions: model.config.maxPositions,
      kvCache: !v["no-kv-cache"],
    });
    const genS = (performance.now() - t1) / 1000;
    console.log(prompt + tok.decode(out));
    console.error(
      `${model.config.modelType}, ${precision}, ${model.net.devices.length} device(s): load ${
        loadS.toFixed(2)
      } s, ` +
        `${out.length} tokens in ${genS.toFixed(2)} s (${(out.length / genS).toFixed(1)} tok/s, ${
          v["no-kv-cache"] ? "recomputed" : "KV cache"
        })`,
    );
    console.error(memoryReport(model.net));
    const overflow = Object.entries(model.f16Overflow);
    if (overflow.length) {
      console.error(`warning: values beyond f16 range became ±inf in ${overflow.length} tensor(s)`);
    }
  } finally {
    await model.dispose();
  }
}
