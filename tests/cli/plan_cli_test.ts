import assert from "node:assert/strict";
import { keg } from "./_keg.ts";

// `keg plan` from the command line: a config.json alone, --devices auto --budget, --json, bad input.

Deno.test("keg plan --devices auto --budget 12GB proposes a split of Qwen2.5-7B in f16; --json writes the plan", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const r = await keg([
      "plan",
      "--model",
      "tests/fixtures/configs/qwen2.5-7b.json",
      "--hparams",
      "configs/ROME/qwen2.5-7b.yaml",
      "--precision",
      "f16",
      "--devices",
      "auto",
      "--budget",
      "12GB",
      "--json",
      `${tmp}/plan.json`,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /plan: .*qwen2\.5-7b\.json \(qwen2\), f16, edit layer 5, C = I/);
    assert.match(r.out, /gpu0: layers 0–13, weights [\d.]+ GiB, C \+ factor 0 B, peak [\d.]+ GiB/);
    assert.match(r.out, /proposal: --devices (0,){14}(1,){13}1 \(2 device\(s\)\)/);
    const plan = JSON.parse(await Deno.readTextFile(`${tmp}/plan.json`));
    assert.equal(plan.devices.length, 2);
    for (const d of plan.devices) assert.ok(d.peak <= 12e9 && d.peak > d.weights, JSON.stringify(d));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("keg plan: bad budget, auto without a budget, unknown adapter are usage errors", async () => {
  const base = [
    "plan",
    "--model",
    "tests/fixtures/configs/llama-2-7b.json",
    "--hparams",
    "configs/ROME/llama-2-7b.yaml",
  ];
  const a = await keg([...base, "--devices", "auto"]);
  assert.equal(a.code, 2);
  assert.match(a.err, /--devices auto needs --budget/);
  const b = await keg([...base, "--budget", "16 parsecs"]);
  assert.equal(b.code, 2);
  assert.match(b.err, /--budget: expected a size such as 16GB/);
  const c = await keg([...base, "--adapter", "tpu"]);
  assert.equal(c.code, 2);
  assert.match(c.err, /--adapter expects gpu or lavapipe/);
});
