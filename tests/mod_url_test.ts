import assert from "node:assert/strict";
import { serveDir } from "./_serve.ts";

Deno.test("mod.ts imported by http URL runs a kernel (shaders load relative to the URL)", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const server = serveDir(root);
  try {
    const url = `http://127.0.0.1:${server.port}/mod.ts`;
    const code = `
      import { Gpu, Tensor, axpy } from "${url}";
      const gpu = await Gpu.open({ quiet: true });
      const y = Tensor.from(gpu, [1, 2, 3], [3], "f32");
      await axpy(y, 2, Tensor.from(gpu, [10, 20, 30], [3], "f32"));
      console.log(JSON.stringify(Array.from(await y.read())));
      await gpu.destroy();
    `;
    const dir = await Deno.makeTempDir();
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        `--allow-import=127.0.0.1:${server.port}`,
        `--allow-net=127.0.0.1:${server.port}`,
        "--allow-env",
        "--allow-read",
        "-",
      ],
      cwd: dir,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const child = cmd.spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(code));
    await w.close();
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout).trim()), [21, 42, 63]);
    await Deno.remove(dir, { recursive: true });
  } finally {
    await server.close();
  }
});
