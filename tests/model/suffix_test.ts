import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { padBatch } from "../../lib/model/transformer.ts";
import { backwardFromLogits, forwardWithTape } from "../../lib/model/backward.ts";
import { prefillAbove, suffixBatch, suffixRow } from "../../lib/model/suffix.ts";
import { Tensor } from "../../lib/gpu/mod.ts";
import { cast } from "../../lib/ops/elementwise.ts";
import { gatherRows } from "../../lib/ops/embedding.ts";
import { maxAbsDiff, randArray, sharedPath, WIRING_FIXTURES } from "../_util.ts";

// v*'s suffix rows: blocks 1… run on the positions cut[b]… of each row after a KV-cached prefix must give
// the whole batch's logits at those rows and the whole batch's gradient w.r.t. the residual at those rows
// (the loss reads only suffix rows), for every block wiring (learned positions, rotary variants, GQA,
// sliding window, parallel block, q/k norms, biases).

Deno.test("suffixBatch maps rows, pads with each row's last token and sizes the cache", () => {
  const full = padBatch([[1, 2, 3, 4, 5], [6, 7, 8]]);
  const s = suffixBatch(full, [3, 0]);
  assert.deepEqual(s.batch.lengths, [2, 3]);
  assert.equal(s.batch.seq, 3);
  assert.deepEqual([...s.batch.ids], [4, 5, 0, 6, 7, 8]);
  assert.deepEqual([...s.sourceRows], [3, 4, 4, 5, 6, 7]);
  assert.equal(s.cacheLength, 6);
  assert.equal(suffixRow(s, 4), 1);
  assert.equal(suffixRow(s, 7), 5);
  assert.throws(() => suffixRow(s, 2), /not in the suffix/);
  assert.throws(() => suffixBatch(full, [5, 0]), /outside/);
});

for (const fixture of WIRING_FIXTURES) {
  Deno.test(`suffix rows after a cached prefix equal the whole batch on ${fixture}`, async () => {
    const dir = sharedPath(`models/fixtures/${fixture}`);
    if (!dir) return;
    const model = await loadModel(dir, { quiet: true });
    try {
      const net = model.net;
      const V = model.config.vocabSize, d = model.config.hiddenSize;
      const id = (t: number) => t < V - 3 ? t : 3 + t % (V - 6);
      const full = padBatch([
        [5, 17, 99, 3, 250, 41, 7, 88, 12, 60, 300].map(id),
        [9, 401, 33, 77].map(id),
        [2, 8, 31, 64, 128, 255, 19].map(id),
      ]);
      const cut = [7, 1, 4];
      const s = suffixBatch(full, cut);
      // the loss reads the last 3 / 2 / 3 positions; every one is in the suffix
      const fullRows = Uint32Array.from([8, 9, 10, 11 + 2, 11 + 3, 22 + 4, 22 + 5, 22 + 6]);
      const sufRows = fullRows.map((r) => suffixRow(s, r));
      const w = randArray(fullRows.length * V, 3);
      const { x } = await net.prefix(full, 0);

      const tFull = await forwardWithTape(net, await cast(x, "f32"), 1, full, fullRows);
      const logitsFull = await tFull.logits.read();
      const dFull = await backwardFromLogits(
        net,
        tFull,
        Tensor.from(x.gpu, w, [fullRows.length, V], "f32"),
        full,
      );
      const gFull = await gatherRows(dFull, s.sourceRows);
      dFull.dispose();

      const cache = await prefillAbove(net, x, 1, s);
      const xs = await gatherRows(x, s.sourceRows, { outDtype: "f32" });
      const tSuf = await forwardWithTape(net, xs, 1, s.batch, sufRows, cache);
      const logitsSuf = await tSuf.logits.read();
      const dSuf = await backwardFromLogits(
        net,
        tSuf,
        Tensor.from(x.gpu, w, [sufRows.length, V], "f32"),
        s.batch,
      );
      const gSuf = await dSuf.read();
      const gF = await gFull.read();
      dSuf.dispose(), gFull.dispose(), cache.dispose(), x.dispose();

      const scaleL = Math.max(...logitsFull.map(Math.abs));
      assert.ok(
        maxAbsDiff(logitsSuf, logitsFull) <= 1e-5 * scaleL + 1e-6,
        `${fixture}: logits differ by ${maxAbsDiff(logitsSuf, logitsFull)} (scale ${scaleL})`,
      );
      // compare the gradient on the real suffix rows only (padding rows are not part of the batch)
      const real = (r: number) => r % s.batch.seq < s.batch.lengths[Math.floor(r / s.batch.seq)];
      let worst = 0, scaleG = 0;
      for (let r = 0; r < s.sourceRows.length; r++) {
        if (!real(r)) continue;
        for (let j = 0; j < d; j++) {
          worst = Math.max(worst, Math.abs(gSuf[r * d + j] - gF[r * d + j]));
          scaleG = Math.max(scaleG, Math.abs(gF[r * d + j]));
        }
      }
      assert.ok(scaleG > 0, `${fixture}: zero gradient`);
      assert.ok(worst <= 1e-5 * scaleG + 1e-7, `${fixture}: gradients differ by ${worst} (scale ${scaleG})`);
    } finally {
      await model.dispose();
    }
  });
}
