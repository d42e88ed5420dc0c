/**
 * Fixtures of the reliability tests: a model directory of symlinks to ../shared's fake-gpt2-tiny (real GPT-2
 * tokenizer, 1 layer, n_embd 2: loads and edits in a moment) with any file replaced, cheap hyper-parameters
 * (2 v* forwards, 6 context templates of 3 tokens, no covariance), and the CLI run in-process with its
 * output captured.
 * @module
 */
import { main } from "../../lib/cli/main.ts";
import { sharedPath } from "../_util.ts";

/** ../shared's tiny GPT-2 with the real tokenizer, or null (skip) when ../shared is absent. */
export const FAKE_GPT2: string | null = sharedPath("data/models/fake-gpt2-tiny");

/** The repository's R-ROME config for tiny-gpt2-counterfact (read, then made cheap). */
export const BASE_HPARAMS =
  new URL("../../configs/R-ROME/tiny-gpt2-counterfact.yaml", import.meta.url).pathname;

/** Writes cheap hparams (optionally with `replace` applied to lines `key: value`) to `path`. */
export async function writeHparams(path: string, replace: Record<string, string> = {}): Promise<string> {
  const cheap: Record<string, string> = {
    v_loss_layer: "0",
    v_num_grad_steps: "2",
    context_template_length_params: "[[3, 5]]",
    mom2_adjustment: "false",
    ...replace,
  };
  const lines = (await Deno.readTextFile(BASE_HPARAMS)).split("\n").filter((l) =>
    !l.startsWith("model_name:")
  );
  const out = lines.map((l) => {
    const k = /^([a-z_0-9]+):/.exec(l)?.[1];
    return k && k in cheap ? `${k}: ${cheap[k]}` : l;
  });
  for (const [k, v] of Object.entries(cheap)) {
    if (!out.some((l) => l.startsWith(`${k}:`))) out.push(`${k}: ${v}`);
  }
  await Deno.writeTextFile(path, out.join("\n"));
  return path;
}

/** Makes `dir` a model directory: symlinks to every file of `src`, except those given in `files`. */
export async function modelDir(
  dir: string,
  src: string,
  files: Record<string, string | Uint8Array> = {},
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for await (const e of Deno.readDir(src)) {
    if (!e.isFile || e.name in files) continue;
    await Deno.symlink(`${src}/${e.name}`, `${dir}/${e.name}`);
  }
  for (const [name, body] of Object.entries(files)) {
    if (typeof body === "string") await Deno.writeTextFile(`${dir}/${name}`, body);
    else await Deno.writeFile(`${dir}/${name}`, body);
  }
  return dir;
}

/** A config.json of `src` with fields replaced. */
export async function configWith(src: string, fields: Record<string, unknown>): Promise<string> {
  const cfg = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
  return JSON.stringify({ ...cfg, ...fields }, null, 2);
}

/** Runs `keg <args>` in-process; returns the exit code and everything printed. */
export async function runKeg(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error, warn = console.warn;
  console.log = (...a: unknown[]) => void out.push(a.map(String).join(" "));
  console.error = (...a: unknown[]) => void err.push(a.map(String).join(" "));
  console.warn = console.error;
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log, console.error = error, console.warn = warn;
  }
}

/** Every path under `dir` (relative), sorted; [] when `dir` does not exist. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory) await walk(`${d}/${e.name}`, r);
    }
  };
  await walk(dir, "");
  return out.sort();
}
