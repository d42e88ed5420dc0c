/**
 * Which editor a command line asks for: MEMIT / AlphaEdit configs go to lib/cli/batch.ts.
 * @module
 */
import { peekAlgName } from "../edit/memit_hparams.ts";

/** Whether `--hparams` names a MEMIT / AlphaEdit file (handled by lib/cli/batch.ts). */
export async function isBatchConfig(args: string[]): Promise<boolean> {
  const i = args.findIndex((a) => a === "--hparams" || a.startsWith("--hparams="));
  if (i < 0) return false;
  const path = args[i].includes("=") ? args[i].slice(args[i].indexOf("=") + 1) : args[i + 1];
  const alg = path ? await peekAlgName(path) : undefined;
  return alg === "MEMIT" || alg === "AlphaEdit";
}
