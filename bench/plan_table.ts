/**
 * Prints the README's `keg plan` table: the planned peak GPU memory of one ROME edit (EasyEdit's shipped
 * config for each model, C = I as those files have it, and with C on) on one device, for the seven
 * 7B-class config.json files of tests/fixtures/configs, in f32 / f16 / mixed.
 * Run: `./keg deno run -A bench/plan_table.ts` (about two minutes; nothing is loaded, no GPU is needed).
 * @module
 */
import { applyOverrides, loadHparams } from "../lib/edit/hparams.ts";
import { planEdit } from "../lib/edit/plan.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MODELS: [string, string, string][] = [
  ["GPT-2 XL", "gpt2-xl", "gpt2-xl"],
  ["GPT-J-6B", "gpt-j-6b", "gpt-j-6B"],
  ["Llama-2-7B", "llama-2-7b", "llama-2-7b"],
  ["Mistral-7B", "mistral-7b", "mistral-7b"],
  ["Llama-3-8B", "llama-3-8b", "llama3-8b"],
  ["Qwen2.5-7B", "qwen2.5-7b", "qwen2.5-7b"],
  ["Qwen3-8B", "qwen3-8b", "qwen3-8b"],
];
const GB = (b: number) => (b / 1e9).toFixed(1);
console.log("| model | weights f16 GB | f32 | f16 | mixed | f16, C on |");
console.log("| ----- | -------------- | --- | --- | ----- | --------- |");
for (const [label, cfg, hpName] of MODELS) {
  const hp = await loadHparams(`${ROOT}configs/ROME/${hpName}.yaml`);
  const model = `${ROOT}tests/fixtures/configs/${cfg}.json`;
  const cells: string[] = [];
  let w16 = 0;
  try {
    for (const precision of ["f32", "f16", "mixed"] as const) {
      const hp0 = applyOverrides(hp, { mom2_adjustment: false });
      const p = await planEdit(model, hp0, { precision, devices: 1 });
      if (precision === "f16") w16 = p.devices[0].weights;
      cells.push(GB(p.devices[0].peak));
    }
    const hp1 = applyOverrides(hp, { mom2_adjustment: true });
    const c = await planEdit(model, hp1, { precision: "f16", devices: 1 });
    cells.push(GB(c.devices[0].peak));
    console.log(`| ${label} | ${GB(w16)} | ${cells.join(" | ")} |`);
  } catch (e) {
    console.log(`| ${label} | — | cannot run: ${(e as Error).message.split("\n")[0]} | | | |`);
  }
}
