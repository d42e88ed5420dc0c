import assert from "node:assert/strict";
import { Gpu, Tensor } from "../../lib/gpu/mod.ts";

// Gpu.destroyOpen (run by tests/_util.ts after a file's last test, and by the CLI before it exits) waits
// for the work of every device still open and releases it; destroy() is idempotent. This file opens its own
// devices: it must not share one with other tests.
Deno.test("Gpu.destroyOpen waits for pending work and releases every open device once", async () => {
  const a = await Gpu.open({ quiet: true }), b = await Gpu.open({ quiet: true, label: "gpu1" });
  const lost = [a, b].map((g) => g.device.lost.then((i) => i.reason));
  const x = Tensor.from(a, new Float32Array([1, 2, 3, 4]), [4], "f32"), z = Tensor.zeros(a, [4], "f32");
  a.copy(x.buffer, 0, z.buffer, 0, 16); // pending work at the time of the call
  await b.destroy(); // b destroyed by hand first: destroyOpen must skip it
  await Gpu.destroyOpen();
  assert.deepEqual(await Promise.all(lost), ["destroyed", "destroyed"]);
  await a.destroy(); // a second destroy returns at once
  await Gpu.destroyOpen(); // nothing left
  const c = await Gpu.open({ quiet: true });
  const y = Tensor.from(c, new Float32Array([5, 6]), [2], "f32");
  assert.deepEqual(Array.from(await y.read()), [5, 6], "a device opened afterwards works");
});
