import assert from "node:assert/strict";
import { sharedPath } from "../_util.ts";

Deno.test("on Deno's GL backend (no shader-f16) keg warns once, naming the fix, and f32 forwards still match", async () => {
  const dirs = ["gpt2-tiny", "llama-tiny-gqa"].map((f) => sharedPath(`models/fixtures/${f}`));
  if (dirs.some((d) => !d)) return;
  const probe = new URL("./_gl_probe.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", probe, ...dirs as string[]],
    env: {
      DENO_WEBGPU_BACKEND: "gl",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `the GL run failed:\n${stderr}`);
  const res = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  assert.equal(res.backend, "gl");
  assert.equal(res.f16, false, "GL has no shader-f16 here");
  // f32 meets the f32 forward tolerance; f16 requests keep f16-rounded weights in f32 storage and meet
  // the f16 tolerance of tests/model/forward_test.ts
  assert.ok(res.worst.f32 <= 5e-5, `f32: max |Δlogit| ${res.worst.f32} on GL`);
  assert.ok(res.worst.f16 <= 3e-2, `f16: max |Δlogit| ${res.worst.f16} on GL`);
  const warnings = stderr.split("\n").filter((l) => l.includes("running on a GL adapter"));
  assert.equal(warnings.length, 1, `one GL warning expected, got:\n${stderr}`);
  assert.match(warnings[0], /\.\/keg setup/);
  assert.match(warnings[0], /mesa-vulkan-drivers/);
  assert.match(warnings[0], /DENO_WEBGPU_BACKEND=vulkan/);
});
